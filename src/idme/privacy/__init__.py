"""The user's own data (issue 14 item 3): the encrypted export archive (:mod:`.archive`). The session-store
side (audit log, forget, retention) is :mod:`idme.session.privacy`."""
