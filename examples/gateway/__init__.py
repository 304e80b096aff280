"""A FastAPI gateway over two typed services, configured from the environment (see README.md)."""
