"""taskman's built-in plugins, installed as the ``taskman_plugins`` package."""
