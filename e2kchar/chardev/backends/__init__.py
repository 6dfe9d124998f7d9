"""The built-in chardev backends, one module each (``e2kchar.chardev.backends.socket``...).

Each module holds a backend's Chardev class and, next to it, what the option layer needs
to build its config. The old paths (``e2kchar.chardev.socket``) are the same modules.
"""
