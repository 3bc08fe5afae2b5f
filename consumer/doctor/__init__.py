"""`doctor`: whether this installation is ready, checked with the settings of `run`.

It reads and asks, and writes nothing: no record is produced, no offset committed, no topic
created, and CXone sees only reads (and the token request). Each check is one `Finding`.
"""
