"""Pure, vectorised NumPy processing shared by the Triton Python-backend models and the client."""
