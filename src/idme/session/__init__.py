"""Where results go: the crash-safe session store and transcript exports.

``store`` (SessionStore, SessionWriter; re-exports the result types), ``model`` (Session, Segment, Word,
SpeakerInfo, SessionSummary), ``sqlite`` (schema, pragmas, transactions), ``liveness`` (is a session's
writer still running), ``rows`` (values <-> rows) and ``export`` (md, txt, srt, vtt, json, rttm).
"""
