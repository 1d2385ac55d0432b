"""Object store: ProtocolDAGResults and task files under one fsspec root URL.

``file://<data dir>/objects`` by default, ``s3://bucket/prefix`` through s3fs. Objects are
write-once and written atomically; every path component is validated.

    store = ObjectStore.from_settings(settings.objectstore)
    obj = store.push_result(data, scope=scope, transformation_key=tf, pdr_key=pdr, ok=True)
    data = store.get_result(obj.location, sha256=obj.sha256)
"""

from .errors import (
    ChecksumMismatch,
    InvalidPath,
    ObjectExists,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStoreUnavailable,
    ObjectTooLarge,
)
from .options import storage_options_from_settings
from .paths import result_location, task_file_location, task_prefix
from .records import ObjectInfo, StoredObject, TaskFile
from .store import ObjectStore

__all__ = [
    "ChecksumMismatch",
    "InvalidPath",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStoreUnavailable",
    "ObjectTooLarge",
    "StoredObject",
    "TaskFile",
    "result_location",
    "storage_options_from_settings",
    "task_file_location",
    "task_prefix",
]
