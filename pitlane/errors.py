"""Errors every pitlane module may raise towards the user, by cause (as Gymnasium's `error.py` does).

Every one is a `UserError`: the CLI prints it as one line and exits 2, whatever the cause. The subclasses
say *why*, so a caller decides by type, never by parsing the message:

  BadInput      the user's input is wrong (a file, a flag, a reference, a model, a config): fix it
  NotFound      the thing named does not exist (a registry manifest or blob, a file): check the name
  Unavailable   a service is down or unreachable (the registry, the twin): retrying may help
  IntegrityError  bytes do not match their digest or their descriptor (tampered, truncated, corrupt)
  SignatureError  a signature or attestation is missing, does not verify, or signs something else
  Refused       intact and well-formed, but a rule says no (an older release, a failed gate or health check)
"""


class UserError(Exception):
    """A problem to report as one clear line, no traceback (exit status 2). Prefer a subclass below."""


class BadInput(UserError):
    """The user's input (a file, a flag, a reference, a model, a config value) is not valid."""


class NotFound(BadInput):
    """What was named does not exist (a registry answered 404, a file is missing)."""


class Unavailable(UserError):
    """A service is down, unreachable or overloaded (connection refused, a timeout, HTTP 5xx/429): retry."""


class IntegrityError(UserError):
    """Bytes whose sha256 is not the digest they were asked for, or larger than their descriptor says."""


class SignatureError(UserError):
    """A signature or attestation is missing, does not verify with the key, or signs another digest."""


class Refused(UserError):
    """Intact, verified and well-formed, but a policy refuses it (a replayed older release, a failed check)."""
