"""Starts moto's server (the local AWS emulator) with two corrections: DynamoDB
transactions, which Ariane's identity function relies on, and the cost of SQS sends to a
long queue.

moto 5's `transact_write_items` deep-copies the whole table once per item of the
transaction, to restore it if the transaction is cancelled. Against a profiles table of
tens of thousands of items, a 90-item transaction copies the table 90 times: the local
demo slows down quadratically and moto runs out of memory. Restoring the backup also
throws away whatever other requests wrote meanwhile, and nothing isolates a transaction
from concurrent writes.

This launcher replaces it with the same checks and writes, done under one lock (DynamoDB
isolates transactions from other writes) and undone item by item from a journal of the
items the transaction touched.

moto 5's `send_message` reads one attribute (`ContentBasedDeduplication`) through
`Queue.attributes`, which first computes every attribute, the message counts included:
a pass over every message of the queue per message sent, so a segment run queueing a few
thousand changes spent minutes in moto. `receive_message` does the same for each message
it returns (`MessageRetentionPeriod`, through `get_queue_attributes`): three passes over
the queue per message received. `Queue.attributes` here returns a mapping that computes a
single attribute when only that one is asked for (`.get(name)`, `[name]`, `name in`),
and all of them, exactly as moto does, when iterated.

Everything else is moto as installed.

With `ARIANE_MOTO_TIMINGS=1` in its environment, each request is also logged with its
action (`X-Amz-Target`, or the S3 method) and the milliseconds moto spent on it: the
way to see what a slow local step waits for.

Usage: python scripts/moto_server.py [moto_server arguments]
"""

import copy
import json
import os
import sys
import threading

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from collections.abc import Mapping

from moto.core.utils import camelcase_to_underscores
from moto.dynamodb.models import DynamoDBBackend
from moto.server import main
from moto.sqs.models import Queue

_LOCK = threading.RLock()


def _locked(method):
    def wrapper(self, *args, **kwargs):
        with _LOCK:
            return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def transact_write_items(self, transact_items):
    with _LOCK:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        journal = []  # (table name, key, attributes before or None), in order
        targets = set()
        errors = []

        def rollback():
            for table_name, key, before in reversed(journal):
                if before is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before)

        for item in transact_items:
            original_item = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")
                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    attrs = op["Item"]
                    table = self.get_table(table_name)
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                target = (str(table_name), str(dict(sorted(key.items()))))
                if target in targets:
                    raise MultipleTransactionsException()
                targets.add(target)

                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition = get_filter_expression(condition_expression, names, values)
                    if not condition.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)
                if op_type != "ConditionCheck":
                    before = copy.deepcopy(current.to_json()["Attributes"]) if current else None
                    journal.append((table_name, key, before))
                if op_type == "Put":
                    self.put_item(table_name, op["Item"])
                elif op_type == "Delete":
                    self.delete_item(table_name, key)
                elif op_type == "Update":
                    self.update_item(
                        table_name,
                        key,
                        update_expression=op["UpdateExpression"],
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                rollback()
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))
            except Exception as e:  # noqa: BLE001 - reported per item, as moto does
                errors.append((type(e).__name__, str(e), original_item))

        if any(code is not None for code, _, _ in errors):
            rollback()
            raise TransactionCanceledException(errors)


DynamoDBBackend.transact_write_items = transact_write_items
for _name in ("put_item", "delete_item", "update_item", "get_item", "query", "scan"):
    setattr(DynamoDBBackend, _name, _locked(getattr(DynamoDBBackend, _name)))

_queue_attributes = Queue.attributes.fget


class _LazyQueueAttributes(Mapping):
    """`Queue.attributes`, computed one attribute at a time when one is asked for (`get`,
    `[name]`, `in`), in full, exactly as moto does, when iterated."""

    def __init__(self, queue):
        self._queue = queue
        self._all = None

    def _full(self):
        if self._all is None:
            self._all = _queue_attributes(self._queue)
        return self._all

    def _single(self, key):
        """(present, value) of one attribute, as moto's full mapping has it."""
        q = self._queue
        present = (
            key in q.BASE_ATTRIBUTES
            or (q.fifo_queue and key in q.FIFO_ATTRIBUTES)
            or (q.kms_master_key_id and key in q.KMS_ATTRIBUTES)
        )
        if not present:
            return False, None
        value = getattr(q, camelcase_to_underscores(key))
        if key == "RedrivePolicy" and q.redrive_policy:
            value = json.dumps(q.redrive_policy)
        if isinstance(value, bool):
            value = str(value).lower()
        return True, value

    def get(self, key, default=None):
        present, value = self._single(key)
        return value if present else default

    def __getitem__(self, key):
        present, value = self._single(key)
        if not present:
            raise KeyError(key)
        return value

    def __contains__(self, key):
        return self._single(key)[0]

    def __iter__(self):
        return iter(self._full())

    def __len__(self):
        return len(self._full())


Queue.attributes = property(lambda self: _LazyQueueAttributes(self))


def _timed(app):
    """A WSGI middleware logging each request's action and duration to stderr."""
    import time

    def timed_app(environ, start_response):
        started = time.perf_counter()
        try:
            return app(environ, start_response)
        finally:
            action = environ.get("HTTP_X_AMZ_TARGET") or environ.get("REQUEST_METHOD", "?") + " s3"
            ms = (time.perf_counter() - started) * 1e3
            sys.stderr.write(f"ariane-timing {action} {ms:.1f}\n")

    return timed_app


if os.environ.get("ARIANE_MOTO_TIMINGS") == "1":
    import werkzeug.serving

    _run_simple = werkzeug.serving.run_simple

    def _run_simple_timed(hostname, port, application, *args, **kwargs):
        return _run_simple(hostname, port, _timed(application), *args, **kwargs)

    werkzeug.serving.run_simple = _run_simple_timed
    import moto.server

    moto.server.run_simple = _run_simple_timed

if __name__ == "__main__":
    sys.argv[0] = "moto_server"
    sys.exit(main())
