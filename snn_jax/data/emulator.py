"""A small DVS emulator: intensity frames in, ON/OFF events ``(x, y, t, p)`` out.

A DVS pixel (Lichtsteiner et al. 2008) keeps a reference log intensity and
emits an event whenever its log intensity has moved one contrast threshold
away from that reference, ON for brighter, OFF for darker; the reference then
moves by one threshold, and the pixel is blind for a refractory period. Frame
emulators (ESIM, Rebecq et al. 2018; v2e, Hu et al. 2021) apply this rule to the
samples of a video. :func:`emulate_events` is that rule, without v2e's
low-pass filter, leak and threshold mismatch; :func:`background_events` adds
uniform background activity. The output is a structured array with the fields
and dtypes tonic gives for DVS128 Gesture, so the frame binning, cache,
augmentation and resume of :mod:`snn_jax.data.events` read it as they read a
recording. METHOD.md section 9 ("DVS emulator and the offline event_digits
task") states the rule with its sources.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EVENT_DTYPE", "background_events", "emulate_events", "merge_events"]

# tonic's DVSGesture dtype: x, y int16, polarity bool (True = ON), t int64 microseconds
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
_NEVER = np.iinfo(np.int64).min // 2  # "no event yet": passes any refractory check


def merge_events(*streams: np.ndarray) -> np.ndarray:
    """Concatenates event arrays and sorts them by ``(t, y, x, p)``.

    Example:
      >>> a = np.array([(0, 0, True, 5)], EVENT_DTYPE)
      >>> b = np.array([(1, 0, False, 2)], EVENT_DTYPE)
      >>> merge_events(a, b)["t"].tolist()
      [2, 5]
    """
    events = np.concatenate([np.asarray(s, EVENT_DTYPE) for s in streams]) if streams else None
    if events is None or len(events) == 0:
        return np.zeros(0, EVENT_DTYPE)
    order = np.lexsort((events["p"], events["x"], events["y"], events["t"]))
    return events[order]


def emulate_events(
    frames: np.ndarray,
    times: np.ndarray,
    *,
    contrast_on: float = 0.2,
    contrast_off: float = 0.2,
    refractory: int = 0,
    log_eps: float = 1e-3,
) -> np.ndarray:
    """DVS events of a sequence of intensity frames (no noise).

    The rule, per pixel, with ``L_k = log(I_k + log_eps)`` (float64):

    - the reference starts at ``R = L_0``; the pixel has no last event;
    - for each interval ``(t_{k-1}, t_k]``: ``d = L_k - R``; the polarity is
      ``p = ON`` if ``d > 0`` else OFF, with threshold ``C_p`` (``contrast_on``
      or ``contrast_off``); ``n = floor(|d| / C_p)`` candidate events, the
      ``j``-th (``j = 1..n``) at ``tau_j = t_{k-1} + floor(j (t_k - t_{k-1}) / n)``;
    - candidates are taken in order of ``j``; one is emitted if and only if
      ``tau_j - t_last >= refractory`` (``t_last``: the pixel's last emitted
      event); an emitted event sets ``t_last = tau_j`` and moves the reference
      one threshold, ``R += C_on`` (ON) or ``R -= C_off`` (OFF). A suppressed
      candidate changes nothing: its change stays in ``d`` and may fire in a
      later interval.

    So a pixel fires when its log intensity has changed by at least one
    threshold since its last event (since the start, before the first), and a
    static scene gives no events.

    Args:
      frames: intensities ``[K, H, W]`` (K >= 1, values >= 0).
      times: frame times ``[K]``, integers (microseconds), strictly increasing.
      contrast_on: ON threshold ``C_on`` > 0 (log units).
      contrast_off: OFF threshold ``C_off`` > 0 (log units).
      refractory: refractory period (same unit as ``times``), >= 0.
      log_eps: offset > 0 inside the logarithm (keeps black pixels finite).

    Returns:
      Events with :data:`EVENT_DTYPE` (``x`` column, ``y`` row, ``p`` True for
      ON, ``t``), sorted by ``(t, y, x, p)``; every ``t`` in ``(t_0, t_{K-1}]``.

    Example:
      >>> frames = np.ones((3, 1, 2))
      >>> frames[1, 0, 1] = np.exp(0.5)       # pixel (x=1, y=0) brightens by 0.5
      >>> ev = emulate_events(frames, np.array([0, 10, 20]), contrast_on=0.2, log_eps=1e-9)
      >>> [(int(e["x"]), bool(e["p"]), int(e["t"])) for e in ev]
      [(1, True, 5), (1, True, 10), (1, False, 15), (1, False, 20)]
    """
    frames = np.asarray(frames)
    times = np.asarray(times)
    if frames.ndim != 3 or len(frames) < 1:
        raise ValueError(f"frames must be [K, H, W] with K >= 1, got shape {frames.shape}")
    if times.shape != (len(frames),) or not np.issubdtype(times.dtype, np.integer):
        raise ValueError(
            f"times must be integers of shape [K] = ({len(frames)},), got {times.dtype} "
            f"{times.shape}"
        )
    if np.any(np.diff(times) <= 0):
        raise ValueError("times must be strictly increasing")
    if np.any(frames < 0) or not np.all(np.isfinite(frames)):
        raise ValueError("frames must be finite intensities >= 0")
    for name, value in (("contrast_on", contrast_on), ("contrast_off", contrast_off)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 (log units), got {value}")
    if refractory < 0:
        raise ValueError(f"refractory must be >= 0, got {refractory}")
    if not log_eps > 0:
        raise ValueError(f"log_eps must be > 0, got {log_eps}")

    height, width = frames.shape[1:]
    log_frames = np.log(frames.reshape(len(frames), -1).astype(np.float64) + log_eps)
    reference = log_frames[0].copy()
    last = np.full(height * width, _NEVER, np.int64)
    times = times.astype(np.int64)
    pixels, stamps, polarity = [], [], []
    for k in range(1, len(frames)):
        d = log_frames[k] - reference
        on = d > 0
        threshold = np.where(on, contrast_on, contrast_off)
        n = np.floor(np.abs(d) / threshold).astype(np.int64)
        active = np.flatnonzero(n)
        if active.size == 0:
            continue
        t0, dt = times[k - 1], times[k] - times[k - 1]
        n_a, step = n[active], np.where(on[active], contrast_on, -contrast_off)
        for j in range(1, int(n_a.max()) + 1):
            cand = n_a >= j
            idx = active[cand]
            tau = t0 + (j * dt) // n_a[cand]
            fire = tau - last[idx] >= refractory
            idx, tau = idx[fire], tau[fire]
            last[idx] = tau
            reference[idx] += step[cand][fire]
            pixels.append(idx)
            stamps.append(tau)
            polarity.append(on[idx])
    if not pixels:
        return np.zeros(0, EVENT_DTYPE)
    idx = np.concatenate(pixels)
    events = np.zeros(len(idx), EVENT_DTYPE)
    events["y"], events["x"] = np.divmod(idx, width)
    events["t"] = np.concatenate(stamps)
    events["p"] = np.concatenate(polarity)
    return merge_events(events)


def background_events(
    rng: np.random.Generator,
    *,
    sensor_size: tuple[int, int],
    t_start: int,
    t_end: int,
    rate: float,
) -> np.ndarray:
    """Background activity: independent Poisson events at every pixel.

    Each pixel draws ``Poisson(rate * (t_end - t_start) * 1e-6)`` events
    (``rate`` per second, times in microseconds), each at a uniform integer
    time in ``[t_start, t_end)`` with a fair-coin polarity. They pass through no
    pixel model (no reference, no refractory period), like the shot noise that
    v2e adds on top of its pixels.

    Args:
      rng: the random source.
      sensor_size: ``(width, height)``.
      t_start: first possible time.
      t_end: end of the window (exclusive), > ``t_start``.
      rate: events per pixel per second, >= 0.

    Returns:
      Events with :data:`EVENT_DTYPE`, sorted by ``(t, y, x, p)``.

    Example:
      >>> ev = background_events(np.random.default_rng(0), sensor_size=(34, 34),
      ...                        t_start=0, t_end=100_000, rate=10.0)
      >>> 0.5 < len(ev) / (34 * 34 * 10 * 0.1) < 1.5, bool(ev["t"].max() < 100_000)
      (True, True)
    """
    if not rate >= 0:
        raise ValueError(f"the noise rate must be >= 0 events per pixel and second, got {rate}")
    if t_end <= t_start:
        raise ValueError(f"t_end must be > t_start, got [{t_start}, {t_end})")
    width, height = sensor_size
    counts = rng.poisson(rate * (t_end - t_start) * 1e-6, size=height * width)
    idx = np.repeat(np.arange(height * width), counts)
    events = np.zeros(len(idx), EVENT_DTYPE)
    events["y"], events["x"] = np.divmod(idx, width)
    events["t"] = rng.integers(t_start, t_end, size=len(idx))
    events["p"] = rng.integers(0, 2, size=len(idx)).astype(bool)
    return merge_events(events)
