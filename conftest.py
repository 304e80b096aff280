"""Load httprail's pytest plugin here rather than through its entry point (see pyproject)."""

pytest_plugins = ("httprail.testing.pytest_plugin",)
