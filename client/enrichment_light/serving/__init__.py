"""Pure adapters used by the Triton Python-backend models in ``model_repository/``.

Nothing here imports ``triton_python_backend_utils``: the ``model.py`` files read tensors, call
these functions and wrap the results, so every piece of serving logic is unit-tested without a
server.
"""
