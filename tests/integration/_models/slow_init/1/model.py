"""Test-only model that hangs while loading."""

import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(60)

    def execute(self, requests):
        raise NotImplementedError
