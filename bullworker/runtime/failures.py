"""How a failed run reads in Redis: the failed reason and a stack trace of the handler's code.

BullMQ stores ``failedReason`` (``str(error)``) and appends a stack trace to
the job's ``stacktrace`` list, which Node tools such as bull-board show. The
reason carries the exception's class, as a Node user reads ``Error: message``
(a Python message alone is often empty or a bare key). The stack keeps the
frames of the user's code and drops those of bullworker, bullmq and asyncio,
which say nothing about what went wrong.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import traceback

#: Directories (and files) whose frames a stack trace leaves out.
_INTERNAL = (
    # bullworker's own package: the parent of this module's folder
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
    *(
        os.path.dirname(os.path.abspath(module.__file__)) + os.sep
        for module in (asyncio, concurrent.futures)
        if module.__file__
    ),
    os.path.abspath(threading.__file__),
)


def _bullmq_dir() -> tuple[str, ...]:
    try:
        import bullmq
    except ImportError:  # pragma: no cover - bullworker needs it anyway
        return ()
    return (os.path.dirname(os.path.abspath(bullmq.__file__ or "")) + os.sep,)


def reason_of(error: BaseException) -> str:
    """``"<ExceptionClass>: <message>"``, or the class alone when the message is empty."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _internal(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_INTERNAL + _bullmq_dir()) or path.startswith("<frozen ")


def handler_stack(error: BaseException) -> str:
    """``error``'s traceback (with its causes) without bullworker's, bullmq's or asyncio's frames."""
    summary = traceback.TracebackException.from_exception(error)
    seen: set[int] = set()
    pending = [summary]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        part.stack = traceback.StackSummary.from_list(
            [frame for frame in part.stack if not _internal(frame.filename)]
        )
        pending.extend(p for p in (part.__cause__, part.__context__) if p is not None)
    return "".join(summary.format())
