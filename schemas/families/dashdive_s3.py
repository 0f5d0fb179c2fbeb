"""Dashdive S3 event types: one per S3 API method, discriminated by `action`.

Field names follow Dashdive's S3 route (`bucketName`, `objectKey`, `versionId`,
`bytes`, ...). Each action lists the fields it needs; fields another action
uses are, for this one, unknown and dropped like any other unknown field.
"""

from __future__ import annotations

from schemas.families.dashdive_fields import Field, opt, req

_BUCKET = (req("bucketName"),)
_OBJECT = (req("bucketName"), req("objectKey"), opt("versionId"))
_UPLOAD = (req("bucketName"), req("objectKey"), req("uploadId"))
_BYTES = req("bytes", "bytes")

_BUCKET_ACTIONS = (
    "CreateBucket", "DeleteBucket", "HeadBucket", "ListObjectsV2", "ListObjectVersions",
    "ListMultipartUploads",
    "GetBucketAcl", "PutBucketAcl", "GetBucketCors", "PutBucketCors", "DeleteBucketCors",
    "GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption",
    "GetBucketVersioning", "PutBucketVersioning",
    "GetObjectLockConfiguration", "PutObjectLockConfiguration",
)  # fmt: skip
_OBJECT_ACTIONS = (
    "HeadObject", "GetObjectAcl", "PutObjectAcl", "GetObjectRetention", "PutObjectRetention",
    "GetObjectLegalHold", "PutObjectLegalHold",
)  # fmt: skip

S3_ACTIONS: dict[str, tuple[Field, ...]] = {
    "ListBuckets": (),
    **{action: _BUCKET for action in _BUCKET_ACTIONS},
    **{action: _OBJECT for action in _OBJECT_ACTIONS},
    "GetObject": (*_OBJECT, _BYTES, opt("isEgressBillable", "boolean")),
    "PutObject": (*_OBJECT, _BYTES),
    "PostObject": (*_OBJECT, _BYTES),
    "CopyObject": (*_OBJECT, req("copySource"), _BYTES),
    "DeleteObject": (*_OBJECT, opt("isDeleteMarker", "boolean")),
    "DeleteObjects": (*_BUCKET, req("deletedObjects", "deleted_objects")),
    "CreateMultipartUpload": _UPLOAD,
    "UploadPart": (*_UPLOAD, req("partNumber", "part"), _BYTES),
    "UploadPartCopy": (*_UPLOAD, req("partNumber", "part"), req("copySource"), _BYTES),
    "CompleteMultipartUpload": (*_UPLOAD, opt("versionId"), opt("bytes", "bytes")),
    "AbortMultipartUpload": _UPLOAD,
    "ListParts": _UPLOAD,
}
"""Per-action fields of an S3 event, beyond the common ones."""
