"""Job states and problems in plain words, for people rather than programs."""
from __future__ import annotations

STATE_WORDS = {
    "PENDING": "Waiting for a worker",
    "STARTED": "Running",
    "SUCCESS": "Done",
    "FAILURE": "Failed",
    "CANCELLED": "Cancelled",
}


def state_words(state: str) -> str:
    return STATE_WORDS.get(state, state.title() if state else "Unknown")


def progress_words(state: str, progress: dict | None) -> str:
    """"3 of 7 images (43 %)", or what is happening when nothing was counted yet."""
    progress = progress or {}
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    if state == "PENDING":
        return "Queued: a worker will pick this job up soon."
    if total:
        eta = progress.get("eta_s")
        tail = f", about {_duration(eta)} left" if eta and state == "STARTED" else ""
        return f"{done} of {total} image{'s' if total != 1 else ''} ({percent(progress):g} %){tail}"
    if state == "STARTED":
        return "Reading the inputs…"
    return ""


def percent(progress: dict | None) -> float:
    progress = progress or {}
    value = progress.get("percent")
    if isinstance(value, (int, float)):
        return round(float(value), 1)
    done, total = progress.get("done") or 0, progress.get("total") or 0
    return round(100.0 * done / total, 1) if total else 0.0


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def failure_words(error: str) -> str:
    """Why a job failed, said plainly; the API's message is kept at the end for whoever debugs it."""
    lowered = (error or "").lower()
    if not error:
        return "The job failed without saying why; the API's log may tell more."
    if "no image could be processed" in lowered:
        return f"None of the images could be read. {error}"
    if "time limit" in lowered:
        return f"The job took longer than the server allows. {error}"
    if "worker" in lowered and "stopped" in lowered:
        return f"The worker running the job stopped several times. {error}"
    if "cancel" in lowered:
        return f"The job was cancelled. {error}"
    return f"The job failed: {error}"


def image_error_words(entry: dict) -> str:
    where = "/".join(str(entry[k]) for k in ("doc_uid", "image") if entry.get(k))
    message = str(entry.get("message") or "could not be processed")
    return f"{where}: {message}" if where else message
