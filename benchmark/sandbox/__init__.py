"""Running untrusted submission code: child processes in Linux namespaces, and the parent's one room for them."""
