"""Test-only model that fails while being imported."""

raise RuntimeError("broken_import: deliberate failure at import time")
