"""Run the Faust app as a worker process."""

from __future__ import annotations

import logging
import time

import faust
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from runtime.kafka import client_config
from runtime.settings import Settings
from streams.app import create_app

log = logging.getLogger(__name__)


def wait_for_kafka(settings: Settings, *, max_delay: float = 10.0) -> None:
    """Block until a broker answers a metadata request.

    Faust exits ("Unable to bootstrap") when Kafka is down at start-up; waiting here
    first lets a worker started during an outage come up on its own when Kafka returns.
    """
    admin = AdminClient(client_config(settings))
    delay = 0.5
    while True:
        try:
            admin.list_topics(timeout=5)
            return
        except KafkaException as exc:
            log.warning("Kafka unreachable (%s); retrying in %.1fs before starting", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)


def run(settings: Settings) -> None:
    wait_for_kafka(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel="INFO", quiet=True)
    worker.execute_from_commandline()
