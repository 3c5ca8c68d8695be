"""Pure core: the tensor contract, errors, file and path helpers, the boolean vocabulary, processing.

Nothing here imports the client, the serving adapters or the launcher; everything above builds on it.
"""
