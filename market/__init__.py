"""The storage client and its ``market`` command; the auditor lives in ``market.auditor``."""
