"""Imported first by the workers' fork server (forkserver.PRELOAD) and by nothing else.

The server only imports modules and holds no state, but while it imports torch (~1.5 s) it cannot
notice that the command which started it is gone: after a `kill -9` of the command it lingered for up
to ~2 s. Asking the kernel to kill it with its parent closes that gap. (Its forks, the workers, do not
inherit this; they watch the command themselves, see search/lifecycle.py.)
"""

import signal
import sys

if sys.platform.startswith("linux"):
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no usable libc: the server still exits once it has loaded
        pass
