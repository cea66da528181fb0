"""`python -m orchestrator.export_samples --out samples.parquet`: served samples joined with their labels.

Reads the samples stream (one entry per answer, `cascade.samples`) in chunks, fetches each answer's
label hash in the same pipelined round trip, and writes one parquet row per served item: ids,
position, the served score and who gave it at which version, experiment arm, impressions, clicks,
dwell, the training label, and every feature tensor the scorer read (`f:<name>` columns; vectors as
fixed-size lists). `cascade.samples.features_of_rows` turns those columns back into model tensors.

By default only items the client reported (an impression, click or dwell) are written: the others
were never confirmed seen. `--after <stream id>` continues from a previous export, whose last id is
printed. The file is written to a temporary name and renamed, so a reader never sees half of it.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from redis.cluster import RedisCluster
from tqdm import tqdm

from cascade.samples import FEATURE_PREFIX, ServedSample, decode_sample, parse_labels, sample_rows
from cascade.settings import Settings, settings_or_report
from orchestrator.clients import keys

CHUNK = 500


def stream_samples(client: redis.Redis | RedisCluster, after: str, chunk: int = CHUNK) -> Iterator[tuple[str, ServedSample, dict]]:
    """(stream id, sample, labels by item) for every entry after `after`, oldest first."""
    cursor = f"({after}" if after != "-" else "-"
    while True:
        entries = client.xrange(keys.SAMPLES, min=cursor, max="+", count=chunk)
        if not entries:
            return
        samples = [(entry_id.decode(), decode_sample(fields)) for entry_id, fields in entries]
        with client.pipeline(transaction=False) as pipe:
            for _, sample in samples:
                pipe.hgetall(keys.labels(sample.user_id, sample.request_id))
            labels = pipe.execute()
        for (entry_id, sample), raw in zip(samples, labels):
            yield entry_id, sample, parse_labels(raw)
        cursor = f"({samples[-1][0]}"


def to_table(rows: list[dict]) -> pa.Table:
    columns = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if name.startswith(FEATURE_PREFIX) and np.ndim(values[0]) > 0:
            stacked = np.stack(values)
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(stacked.reshape(-1)), stacked.shape[1])
        else:
            columns[name] = pa.array(values)
    return pa.table(columns)


def export_samples(settings: Settings, out: Path, after: str = "-", impressed_only: bool = True) -> dict:
    """Write the joined rows to `out`; return counts and the last stream id read."""
    client = (RedisCluster if settings.redis_cluster else redis.Redis).from_url(settings.effective_redis_url, socket_timeout=10)
    total = client.xlen(keys.SAMPLES)
    rows: list[dict] = []
    samples, last = 0, after
    with tqdm(total=total, desc="samples", unit="answer", mininterval=1.0, disable=None) as bar:
        for entry_id, sample, labels in stream_samples(client, after):
            rows.extend(sample_rows(sample, labels, settings.dwell_positive_ms, impressed_only))
            samples, last = samples + 1, entry_id
            bar.update()
    client.close()
    if rows:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        pq.write_table(to_table(rows), partial)
        partial.replace(out)
    return {"samples": samples, "rows": len(rows), "positives": sum(r["label"] for r in rows), "last_id": last}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.export_samples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the parquet file to write")
    parser.add_argument("--after", default="-", help="a stream id: export the samples logged after it")
    parser.add_argument("--all", action="store_true", help="also the served items no feedback reported seen")
    args = parser.parse_args(argv)
    settings = settings_or_report()
    if settings is None:
        return 2
    try:
        result = export_samples(settings, args.out, args.after, impressed_only=not args.all)
    except redis.RedisError as err:
        print(f"samples not exported: redis at {settings.effective_redis_url}: {err}", file=sys.stderr)
        return 1
    if result["rows"] == 0:
        print(f"nothing to export: {result['samples']} samples, none with feedback (--all keeps them)")
        return 0
    print(f"wrote {args.out}: {result['rows']} rows ({result['positives']} positives) from {result['samples']} "
          f"samples; continue with --after {result['last_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
