"""Waiting for this process's raylets, so that a killed one really takes its node down.

A child process that dies stays a zombie until its parent waits for it, and a
zombie still answers ``kill(pid, 0)``, which is how Ray's worker processes look
for their raylet (``ExitIfParentRayletDies``).  A raylet started by this
process (``LocalCluster``, ``Scheduler``, ``Worker``) that someone kills with
``SIGKILL`` would so leave its worker processes running their tasks to the
end.  A :class:`Reaper` waits for those raylets on one named thread: a pidfd
per raylet (Linux) becomes readable when it dies, and the thread reaps it at
once (``Popen.poll``); the workers then notice within Ray's check interval
(1 s), exit, and Ray retries their tasks elsewhere::

    os.kill(raylet, SIGKILL) ──► pidfd readable ──► raydask-reaper: popen.poll()
        ──► workers see no raylet, exit ──► owner retries the task on another node
"""

from __future__ import annotations

import logging
import os
import select
import threading

__all__ = ["Reaper"]


class Reaper:
    """Reaps the watched child processes as soon as they exit; ``close()`` joins the thread."""

    def __init__(self, name="raydask-reaper"):
        self._lock = threading.Lock()
        self._watched: dict[int, tuple] = {}  # pidfd (or pid, without pidfds) -> (Popen, on_exit)
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def watch(self, popen, on_exit=None) -> None:
        """Reap ``popen`` (a ``subprocess.Popen`` child of this process) when it exits.

        ``on_exit(popen)``, if given, is called on the reaper's thread right after:
        keep it short (hand anything slow to another thread).
        """
        if popen is None:
            return
        try:
            key = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # no pidfds (not Linux, or it already exited): look each second
            key = -popen.pid
        with self._lock:
            self._watched[key] = (popen, on_exit)
        os.write(self._wake_w, b"x")

    def _run(self):
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        registered = set()
        while True:
            with self._lock:
                if self._closed:
                    break
                watched = dict(self._watched)
            for key in watched.keys() - registered:
                if key >= 0:
                    poller.register(key, select.POLLIN)
                registered.add(key)
            timeout = 1000 if any(k < 0 for k in watched) else None
            for fd, _ in poller.poll(timeout):
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
            for key, (popen, on_exit) in watched.items():
                if popen.poll() is not None:  # reaps it: it is no zombie any more
                    self._forget(key, poller, registered)
                    if on_exit is not None:
                        try:
                            on_exit(popen)
                        except Exception:  # noqa: BLE001 - a broken callback must not stop the reaping
                            logging.getLogger("raydask").exception("error in a reaper callback")
        for key in list(registered):
            self._forget(key, poller, registered)
        os.close(self._wake_r)

    def _forget(self, key, poller, registered):
        with self._lock:
            self._watched.pop(key, None)
        registered.discard(key)
        if key >= 0:
            poller.unregister(key)
            os.close(key)

    def close(self) -> None:
        """Stop watching and join the thread (the watched processes are left as they are)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        os.close(self._wake_w)
