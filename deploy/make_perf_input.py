"""Write a perf_analyzer ``--input-data`` JSON file that sends one encoded image per request.

perf_analyzer takes a ``b64`` value as the raw bytes of the tensor. For a BYTES tensor those are
the serialized elements (4-byte little-endian length, then the bytes), so the encoded image is
wrapped that way here. Usage::

    python deploy/make_perf_input.py photo.jpg perf-input.json
    perf_analyzer -m enrich -i grpc -u localhost:8001 --input-data perf-input.json --shape IMAGE_BYTES:1
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
from pathlib import Path

from enrichment_light.core.contract import IMAGE_BYTES


def perf_input(encoded_images: list[bytes]) -> dict:
    """Return the perf_analyzer input-data document: one request (step) per encoded image."""
    if not encoded_images:
        raise ValueError("expected at least one encoded image, got none")
    steps = []
    for data in encoded_images:
        if not data:
            raise ValueError("expected a non-empty encoded image, got 0 bytes")
        serialized = struct.pack("<I", len(data)) + data
        steps.append({IMAGE_BYTES: {"b64": base64.b64encode(serialized).decode("ascii"), "shape": [1]}})
    return {"data": steps}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: images in, JSON file out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="JPEG/PNG/WebP files, one request each")
    parser.add_argument("output", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    doc = perf_input([path.read_bytes() for path in args.images])
    args.output.write_text(json.dumps(doc))
    print(f"wrote {args.output} ({len(doc['data'])} request(s))")


if __name__ == "__main__":
    main()
