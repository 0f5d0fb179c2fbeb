"""The ground floor every process stands on: settings, Kafka clients and their configs,
metrics and the watchdog, topic admin. It imports `schemas` and third-party libraries,
never a process package (`producer_api`, `streams`, `sinks`) nor the `sluice` CLI."""
