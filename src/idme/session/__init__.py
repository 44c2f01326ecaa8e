"""Where results go: the crash-safe session store (``store``) and transcript exports (``export``)."""
