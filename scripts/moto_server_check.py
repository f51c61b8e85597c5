"""Checks the corrections of scripts/moto_server.py against moto itself: the lazy queue
attributes give what moto's full mapping gives, for every attribute and kind of queue.
Run by `make test`."""

import os
import sys

sys.argv = [sys.argv[0]]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import moto_server  # noqa: E402  (applies the corrections)
from moto.sqs.models import sqs_backends  # noqa: E402

backend = sqs_backends["123456789012"]["eu-west-1"]
dlq = backend.create_queue("check-dlq")
queues = [
    backend.create_queue("check-plain"),
    backend.create_queue(
        "check-redrive", RedrivePolicy='{"deadLetterTargetArn":"%s","maxReceiveCount":5}' % dlq.queue_arn, Policy='{"Version":"2012-10-17"}'
    ),
    backend.create_queue("check.fifo", FifoQueue="true", ContentBasedDeduplication="true"),
    backend.create_queue("check-kms", KmsMasterKeyId="alias/aws/sqs"),
]
checked = 0
for queue in queues:
    lazy, full = queue.attributes, moto_server._queue_attributes(queue)
    for key in list(full) + ["FifoQueue", "ContentBasedDeduplication", "KmsMasterKeyId", "NotAnAttribute"]:
        assert (key in lazy) == (key in full), (queue.name, key)
        assert lazy.get(key, "default") == full.get(key, "default"), (queue.name, key, lazy.get(key), full.get(key))
        if key in full:
            assert lazy[key] == full[key], (queue.name, key)
        checked += 1
    assert dict(lazy) == full, queue.name
print(f"moto_server corrections: {checked} queue attributes agree with moto")
