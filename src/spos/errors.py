"""The one exception type users see as a clean one-line message (no traceback) from the CLI."""

from dataclasses import fields


class SposError(Exception):
    """A user error: bad input, missing file, incompatible checkpoint. The message says the fix."""


#: Exit status of a run that SIGTERM or SIGINT stopped after it saved its state (EX_TEMPFAIL of
#: sysexits.h: a temporary failure; run the same command again to resume).
EXIT_PREEMPTED = 75


class Preempted(SposError):
    """SIGTERM/SIGINT arrived: the run finished its step, saved its state and stopped. The same
    command (with ``--resume``) continues it exactly."""


def check_keys(cls, d: dict, where: str) -> None:
    """Refuse keys the config dataclass ``cls`` does not have, in one line naming them and the
    allowed ones (``where`` says which section, e.g. "search options")."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise SposError(f"unknown {where} {unknown}; allowed: {known}")


def dataclass_from_dict(cls, d: dict, where: str):
    """``cls(**d)`` after :func:`check_keys`."""
    check_keys(cls, d, where)
    return cls(**d)
