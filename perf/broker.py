#!/usr/bin/env python3
"""The broker alone, for the distributed-mode baseline: produce N records of PAYLOAD bytes to a
fresh topic with acks=all and linger.ms=1 (the pod's producer settings), then consume them from
the beginning; print one JSON line with msg/s of each phase.

Needs kafka-python 2.0.2 (pure Python; `pip install kafka-python==2.0.2` in a venv). The client is
single-threaded Python, so the figure is a LOWER bound of what the broker can do; the JSON says
how much CPU the client process itself used so the reader can tell.

usage: broker.py BOOTSTRAP N PAYLOAD PARTITIONS
"""
import json
import resource
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

API = (2, 8, 0)  # pinned: tansu 0.6.0 answers ApiVersions in a way the auto-probe does not parse


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    bootstrap, n, size, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    topic = f"perfbroker{int(time.time() * 1000)}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, api_version=API)
    admin.create_topics([NewTopic(topic, num_partitions=parts, replication_factor=1)])
    admin.close()
    value = b"x" * size
    prod = KafkaProducer(bootstrap_servers=bootstrap, api_version=API, acks="all", linger_ms=1,
                         batch_size=65536, max_in_flight_requests_per_connection=5)
    c0, t0 = cpu(), time.monotonic()
    futs = [prod.send(topic, value=value, key=str(i % 1000).encode()) for i in range(n)]
    prod.flush()
    errors = sum(1 for f in futs if f.exception is not None)
    t1, c1 = time.monotonic(), cpu()
    prod.close()
    cons = KafkaConsumer(bootstrap_servers=bootstrap, api_version=API, auto_offset_reset="earliest",
                         enable_auto_commit=False, fetch_max_wait_ms=100)
    cons.assign([TopicPartition(topic, p) for p in range(parts)])
    cons.seek_to_beginning()
    got, t2 = 0, time.monotonic()
    deadline = t2 + 120
    while got < n and time.monotonic() < deadline:
        for recs in cons.poll(timeout_ms=500, max_records=10000).values():
            got += len(recs)
    t3, c3 = time.monotonic(), cpu()
    cons.close()
    print(json.dumps({
        "topic": topic, "records": n, "payload_bytes": size, "partitions": parts,
        "produce_errors": errors, "produce_secs": round(t1 - t0, 3),
        "produce_per_sec": round(n / (t1 - t0)), "produce_client_cpu_secs": round(c1 - c0, 2),
        "consumed": got, "consume_secs": round(t3 - t2, 3),
        "consume_per_sec": round(got / (t3 - t2)), "consume_client_cpu_secs": round(c3 - c1, 2),
    }))


if __name__ == "__main__":
    main()
