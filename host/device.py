"""The device API: deploy a bundle onto a chip and run inputs, over any :class:`BusPort`.

The same code drives a real board, the simulated board (both over the serial link) and the
Verilated chip without a link, and writes the run format of ``docs/run-format.md``::

    dev = Device(bus, geometry)
    dev.deploy(bundle)
    result = dev.run(x, labels)          # a plasticore.runs.RunResult

Per sample: CLEAR (u, s := 0), H := H0 for ``h_persist = sample`` layers (rewritten), then for every
step the layer-0 inputs are written to the layer-0 cores and ``RUN 1`` executes all layers (it answers the
number of outputs waiting, so the host knows each step's share).  At the sample's end (or earlier, when
the next step could overflow the output ring) the waiting outputs of every recorded layer are read from
the output window (``OUT_WIN``: reading changes nothing, so a read whose reply was lost is simply
repeated) and then acknowledged (``OUT_ACK``, a write: executed once).  After the last step the
membranes are read; after the last sample the plastic weights.

If the board stops answering, :class:`~plasticore.host.bus.TargetStopped` names what the host was doing
(``deploy``, ``run (sample k/S)``, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import numpy as np

from plasticore import chip_map as M
from plasticore import contract as C
from plasticore import core_map as CM
from plasticore.bundle import Bundle
from plasticore.chip_map import ChipGeometry, EngineInfo
from plasticore.errors import PlasticoreError

from .bus import BusError, BusPort, TargetStopped
from .compiler import (
    ChipImage,
    CompileError,
    Placement,
    chip_addr,
    compile_bundle,
    core_addr,
    decode_lane_words,
    decode_outputs,
    decode_scalars,
    lane_words,
    matrix_words,
    place,
    scalar_words,
)


class DeviceError(PlasticoreError):
    """The device is not in the state the host expects (wrong design, lost outputs, ...)."""


#: zero inputs between two non-zero ones that are still written (a zero word costs 4 bytes, a new write
#: frame about 15): :func:`input_runs`
MAX_ZERO_GAP = 3


def input_runs(x: np.ndarray) -> list[tuple[int, list[int]]]:
    """One step's layer-0 inputs as writes of their non-zero runs: ``(first axon, 9-bit words)``, runs
    joined across at most :data:`MAX_ZERO_GAP` zeros; none for an all-zero step (sparse spike inputs
    become a few (axon, value) events instead of a dense vector; the chip reads an axon not written
    in a step as 0)."""
    nz = np.flatnonzero(np.asarray(x))
    runs: list[tuple[int, list[int]]] = []
    if nz.size == 0:
        return runs
    breaks = np.flatnonzero(np.diff(nz) > MAX_ZERO_GAP + 1)
    for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks, nz.size - 1], strict=True):
        lo, hi = int(nz[a]), int(nz[b]) + 1
        runs.append((lo, scalar_words(x[lo:hi], C.X_BITS)))
    return runs


def stream_refusal(b: Bundle, events: bool = False) -> str | None:
    """Why no sample engine can run bundle ``b``, fed features (or coded inputs as ``events``); None: any
    engine with room for it can."""
    if not events and b.coding.kind == "rate" and b.coding.rng != "xorshift32":
        return (f"the engine draws rate-coded spikes from xorshift32; the bundle's generator is "
                f"{b.coding.rng!r} (a bundle before version 4: export it again, or run it host-driven)")
    if b.layers[-1].soma != C.SomaMode.LIF:
        return "the prediction of an ANN output layer needs its last-step outputs, not its membranes"
    return None


class Device:
    def __init__(self, bus: BusPort, geometry: ChipGeometry, design_id: int | None = None):
        self.bus = bus
        self.geom = geometry
        self.design_id = design_id
        self.bundle: Bundle | None = None
        self.image: ChipImage | None = None
        self.stats = {"steps": 0, "samples": 0, "seconds": 0.0}
        self._engine: EngineInfo | None | bool = False  # False: not asked yet
        self._held: dict = {}
        self._host_inputs = None

    def close(self) -> None:
        self.bus.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ identity
    def identify(self) -> dict:
        """Read the chip registers and check them against the expected geometry."""
        cid, mesh, ncores = (self.bus.read(chip_addr(M.ChipReg.CHIP_ID), 3))
        if cid != M.CHIP_ID_VALUE:
            raise DeviceError(f"chip id 0x{cid:08x} is not a plasticore chip (expected 0x{M.CHIP_ID_VALUE:08x})")
        mx, my = mesh & 0xFF, mesh >> 8 & 0xFF
        if (mx, my) != (self.geom.mesh_x, self.geom.mesh_y) or ncores != self.geom.cores:
            raise DeviceError(f"chip has a {mx}x{my} mesh ({ncores} cores), the host expected "
                              f"{self.geom.mesh_x}x{self.geom.mesh_y}")
        did = self.bus.read(chip_addr(M.ChipReg.DESIGN_ID), 1)[0]
        if self.design_id is not None and did != self.design_id:
            raise DeviceError(f"design id 0x{did:08x} differs from the expected 0x{self.design_id:08x}: "
                              f"the board runs another build")
        a = self.bus.read(core_addr(0, CM.Mem.REG, CM.Reg.GEOM_A), 5)  # GEOM_A, GEOM_N, GEOM_P, ID, VERSION
        geo = (a[0], a[1], a[2])
        want = (self.geom.core.a_max, self.geom.core.n_max, self.geom.core.lanes)
        if geo != want:
            raise DeviceError(f"core geometry (axons, neurons, lanes) = {geo}, the host expected {want}")
        version = a[4]
        if version not in (CM.CORE_VERSION, CM.PROGRAM_CORE_VERSION):
            raise DeviceError(f"core version {version} is not one this host knows "
                              f"({CM.CORE_VERSION}: v1 rule, {CM.PROGRAM_CORE_VERSION}: rule programs)")
        # (the identify reply of the link does not say whether the cores run rule programs: their VERSION does)
        self.geom = dataclasses.replace(self.geom, programs=version == CM.PROGRAM_CORE_VERSION)
        return {"chip_id": cid, "mesh": (mx, my), "cores": ncores, "design_id": did, "core": geo,
                "core_version": version}

    @contextlib.contextmanager
    def _during(self, step: str):
        """Name ``step`` in a :class:`TargetStopped` raised inside (the innermost step wins)."""
        try:
            yield
        except TargetStopped as e:
            if e.step is not None:
                raise
            raise e.during(step) from None

    # ------------------------------------------------------------------ deploy
    def deploy(self, bundle: Bundle, record_all: bool = True, progress=None) -> ChipImage:
        """Compile ``bundle`` for this chip and load every core, routing table and phase."""
        img = compile_bundle(bundle, self.geom, record_all)
        with self._during("deploy"):
            self._load(img, progress)
        self.bundle, self.image = bundle, img
        self._held = {}  # (memory, layer) -> the host inputs the cores hold (program cores; zero after a deploy)
        return img

    def _load(self, img: ChipImage, progress) -> None:
        self.bus.reset()
        for ci in img.cores:
            for reg, val in ci.regs.items():
                self.bus.write(core_addr(ci.core, CM.Mem.REG, int(reg)), [int(val) & 0xFFFFFFFF])
            for addr, words in ci.runs:
                self.bus.write(addr, words)
                if progress is not None:
                    progress(len(words))
        for addr, word in img.chip_writes:
            self.bus.write(addr, [word])
        self.bus.write(chip_addr(M.ChipReg.CLEAR), [1])
        self.bus.sync()

    def _need(self) -> tuple[Bundle, ChipImage]:
        if self.bundle is None or self.image is None:
            raise DeviceError("no network deployed: call deploy(bundle) first")
        return self.bundle, self.image

    # ------------------------------------------------------------------ state
    def read_u(self, layer: int) -> np.ndarray:
        return self.read_us([layer])[0]

    def read_us(self, layers, extra: tuple[int, int] | None = None):
        """The membranes of ``layers`` (a list of (N,) arrays), read in one batch of requests; ``extra``
        (addr, n) is read in the same batch and returned after them."""
        b, img = self._need()
        slices = [sl for li in layers for sl in img.placement.slices if sl.layer == li]
        spans = [(core_addr(sl.core, CM.Mem.U, 0), sl.j1 - sl.j0) for sl in slices]
        words = self.bus.read_many(spans + ([extra] if extra else []))
        out = {li: np.zeros(b.layers[li].n_out, np.int64) for li in layers}
        for sl, w in zip(slices, words, strict=False):
            out[sl.layer][sl.j0:sl.j1] = decode_scalars(w, C.U_BITS)
        return [out[li] for li in layers] + ([words[-1]] if extra else [])

    def read_h(self, layer: int) -> np.ndarray:
        b, img = self._need()
        L = b.layers[layer]
        out = np.zeros((L.n_in, L.n_out), np.int64)
        for sl in img.placement.slices:
            if sl.layer == layer:
                n = sl.j1 - sl.j0
                w = self.bus.read(core_addr(sl.core, CM.Mem.H, 0), matrix_words(L.n_in, n, CM.Mem.H, self.geom.core))
                out[:, sl.j0:sl.j1] = decode_lane_words(w, CM.Mem.H, self.geom.core, L.n_in, n)
        return out

    def write_h(self, layer: int, H: np.ndarray) -> None:
        for addr, words in self._h_runs(self._need()[1].placement, layer, H):
            self.bus.write(addr, words)

    def _h_runs(self, pl: Placement, layer: int, H: np.ndarray) -> list[tuple[int, list[int]]]:
        """The bus writes of H into ``layer``'s cores: (first address, words) a core slice."""
        return [(core_addr(sl.core, CM.Mem.H, 0),
                 lane_words(np.asarray(H)[:, sl.j0:sl.j1].astype(np.int64), CM.Mem.H, self.geom.core))
                for sl in pl.slices if sl.layer == layer]

    def _h0_runs(self, b: Bundle, pl: Placement) -> list[tuple[int, list[int]]]:
        """:meth:`_h_runs` of H0 for every layer that resets H at each sample."""
        return [r for li in b.reset_h_layers() for r in self._h_runs(pl, li, b.layers[li].H0)]

    # ------------------------------------------------------------------ run
    def run(self, x: np.ndarray, labels: np.ndarray | None = None, record_membranes: bool = False,
            progress=None, m: dict | None = None, teach=None):
        """Run layer-0 inputs ``x`` (S, T, A0) sample after sample; returns a :class:`plasticore.runs.RunResult`.

        ``m`` ({layer: array}) is the third-factor input t of the layers' rule programs and ``teach`` the
        output layer's teaching current, in the shapes :func:`plasticore.golden.run` takes (a chip of
        program cores only)."""
        from plasticore.golden import run_inputs
        from plasticore.runs import RunResult, check_inputs, predict

        b, img = self._need()
        x = check_inputs(b, x)
        S, T = x.shape[:2]
        if (m or teach is not None) and not self.geom.programs:
            raise DeviceError("this chip's cores run the v1 rule: no third factor m or teaching current "
                              "(a chip of program cores has them)")
        self._host_inputs = run_inputs(b, S, m, teach) if self.geom.programs else None
        spikes = [np.zeros((S, T, L.n_out), np.int16) for L in b.layers]
        u_final = [np.zeros((S, L.n_out), np.int32) for L in b.layers]
        u_trace = [np.zeros((S, T, L.n_out), np.int32) for L in b.layers] if record_membranes else None
        reset_h = b.reset_h_layers()
        t0 = time.perf_counter()
        for s in range(S):
            with self._during(f"run (sample {s + 1}/{S})"):
                self._run_sample(x[s], s, spikes, u_final, u_trace, reset_h)
            if progress is not None:
                progress(1)
        with self._during("run (reading the final weights)"):
            drops = self.bus.read(chip_addr(M.ChipReg.OUT_DROPS), 1)[0]
            if drops:
                raise DeviceError(f"the chip dropped {drops} outputs (output ring full)")
            h_final = self._final_h(b)
        self._count(t0, S, T)
        preds = predict(b, u_final[-1].astype(np.int64), spikes[-1][:, -1].astype(np.int64))
        return RunResult(spikes=spikes, u_final=u_final, h_final=h_final, predictions=preds,
                         labels=None if labels is None else np.asarray(labels, np.int64), u_trace=u_trace)

    def _final_h(self, b: Bundle) -> list[np.ndarray]:
        """H of every layer at the end of a run: read from the chip where plastic, else H0."""
        return [self.read_h(li).astype(np.int16) if L.plastic else L.H0.astype(np.int16)
                for li, L in enumerate(b.layers)]

    def _count(self, t0: float, samples: int, steps: int) -> None:
        self.stats["seconds"] += time.perf_counter() - t0
        self.stats["steps"] += samples * steps
        self.stats["samples"] += samples

    def _run_sample(self, xs: np.ndarray, s: int, spikes, u_final, u_trace, reset_h) -> None:
        """Sample ``s`` (inputs ``xs`` (T, A0)): results into row ``s`` of the arrays.

        Each ``RUN 1`` answers how many outputs wait in the ring, so the host knows which step each
        waiting entry belongs to; the entries are read (and acknowledged) only when the next step could
        overflow the ring, and at the sample's end: one window read per sample instead of one per step."""
        b, img = self._need()
        self.bus.write(chip_addr(M.ChipReg.CLEAR), [1])
        if s > 0:
            for li in reset_h:
                self.write_h(li, b.layers[li].H0)
        most = sum(L.n_out for L in b.layers)  # outputs one step can add to the ring at most
        steps: list[tuple[int, int]] = []  # (step, its entries) waiting in the ring, oldest first
        waiting = 0
        layers = list(range(len(b.layers)))
        T = len(xs)
        for t in range(T):
            self._write_host_inputs(s, t)
            for start, words in input_runs(xs[t]):  # an axon not written in a step reads 0
                for k in img.placement.layer_cores[0]:
                    self.bus.write(core_addr(k, CM.Mem.X, start), words)
            n = self.bus.run(1)
            steps.append((t, n - waiting))
            waiting = n
            last = t == T - 1
            drain = waiting and (last or waiting + most > self.geom.out_fifo)
            if last or u_trace is not None:  # the membranes (and the window) in one batch of reads
                *us, entries = self.read_us(layers, (chip_addr(M.ChipReg.OUT_WIN), waiting if drain else 0))
                for li, u in enumerate(us):
                    if u_trace is not None:
                        u_trace[li][s, t] = u
                    if last:
                        u_final[li][s] = u
                if drain:
                    self._ack_outputs(entries, waiting)
            elif drain:
                entries = self.read_outputs(waiting)
            if drain:
                decoded = iter(decode_outputs(entries, b, img.placement))
                for step, k in steps:
                    for _ in range(k):
                        li, j, v = next(decoded)
                        spikes[li][s, step, j] = v
                steps, waiting = [], 0

    def _write_host_inputs(self, s: int, t: int) -> None:
        """(Program cores) the third factor t of every layer and the output layer's teaching current at
        step ``t`` of sample ``s``, written where they differ from the values the cores hold (zero after
        a deploy)."""
        if self._host_inputs is None:
            return
        b, img = self._need()
        ms, tc = self._host_inputs
        last = len(b.layers) - 1
        for li, L in enumerate(b.layers):
            for mem, arr, bits in ((CM.Mem.MT, ms[li], CM.ALL_MEMS[CM.Mem.MT].bits),
                                   (CM.Mem.TEACH, tc if li == last else None, C.U_BITS)):
                want = np.zeros(L.n_out, np.int64) if arr is None else np.asarray(arr[s, t], np.int64)
                key = (mem, li)
                if np.array_equal(self._held.get(key, np.zeros(L.n_out, np.int64)), want):
                    continue
                for sl in img.placement.slices:
                    if sl.layer == li:
                        self.bus.write(core_addr(sl.core, mem, 0), scalar_words(want[sl.j0:sl.j1], bits))
                self._held[key] = want

    def read_outputs(self, n: int) -> list[int]:
        """The ``n`` oldest waiting output entries, then acknowledged: the window read changes nothing
        (a lost reply is read again); the acknowledgement is a write, executed once."""
        entries = self.bus.read(chip_addr(M.ChipReg.OUT_WIN), n)
        self._ack_outputs(entries, n)
        return entries

    def _ack_outputs(self, entries: list[int], n: int) -> None:
        """Acknowledge the ``n`` window ``entries`` just read (all of them must be outputs)."""
        if M.OUT_EMPTY in entries:
            raise DeviceError(f"the chip reported {n} outputs but has {entries.index(M.OUT_EMPTY)}")
        self.bus.write(chip_addr(M.ChipReg.OUT_ACK), [n])

    # ------------------------------------------------------------------ the sample engine
    def engine(self) -> EngineInfo | None:
        """The chip's sample engine (None: the chip has none: its ID register reads another value or
        is a bus error)."""
        if self._engine is False:
            try:
                ident, info = self.bus.read(M.engine_addr(M.EngineReg.ID), 2)
            except BusError:
                ident = info = None
            self._engine = None
            if ident == M.ENGINE_ID_VALUE:
                h0_words = self.bus.read(M.engine_addr(M.EngineReg.H0_WORDS), 1)[0]
                self._engine = dataclasses.replace(EngineInfo.decode(info), h0_words=h0_words)
        return self._engine

    def why_not_stream(self, bundle: Bundle | None = None, events: bool = False) -> str | None:
        """None if the deployed ``bundle`` can run on the chip's sample engine (fed features, or coded
        inputs as ``events``), else why not (one line)."""
        b = bundle or self._need()[0]
        if (why := stream_refusal(b, events)) is not None:
            return why
        eng = self.engine()
        if eng is None:
            return "the chip has no sample engine"
        if b.timesteps > eng.max_steps:
            return f"{b.timesteps} steps per sample > the engine's {eng.max_steps}"
        if M.feature_words(b.n_in) > eng.in_words or M.record_words(b.layers[-1].n_out) > eng.res_words:
            return "a sample or its record does not fit the engine's queues"
        if b.reset_h_layers():
            try:
                pl = self.image.placement if b is self.bundle else place(b, self.geom)
            except CompileError as e:
                return str(e)
            runs = self._h0_runs(b, pl)
            words = sum(len(w) for _, w in runs)
            if words > eng.h0_words or len(runs) > M.ENGINE_MAX_H0_RUNS:
                return (f"layers {', '.join(map(str, b.reset_h_layers()))} reset H at every sample (h_persist = "
                        f"sample): their H0 is {words} words in {len(runs)} runs, the engine's H0 store holds "
                        f"{eng.h0_words} words in {M.ENGINE_MAX_H0_RUNS} runs")
        return None

    def stream(self, features: np.ndarray, labels: np.ndarray | None = None, progress=None):
        """Run uint8 ``features`` (S, n_in) through the sample engine: the chip codes the inputs (the
        bundle's ramp, or its rate coding's xorshift32), runs the samples back to back and keeps a compact
        record each (the output layer's final membranes); the host keeps the input queue full and reads
        records as they come.  Returns a :class:`plasticore.runs.CompactResult` (bit-exact with
        ``CompactResult.of(golden.run(b, encode_for(b, features)))``)."""
        from plasticore.coding import check_features

        b, _ = self._need()
        f = check_features(features, b.n_in)
        return self._stream(b, [M.pack_features(s) for s in f], False, labels, progress)

    def stream_inputs(self, x: np.ndarray, labels: np.ndarray | None = None, progress=None):
        """Run coded layer-0 inputs ``x`` (S, T, n_in) through the sample engine as events: every non-zero
        input one word (:func:`plasticore.chip_map.pack_events`), so sparse spike trains cost what they
        hold.  Returns a :class:`plasticore.runs.CompactResult` (bit-exact with
        ``CompactResult.of(golden.run(b, x))``)."""
        from plasticore.runs import check_inputs

        b, _ = self._need()
        x = check_inputs(b, x)
        return self._stream(b, [M.pack_events(s) for s in x], True, labels, progress)

    def _stream(self, b: Bundle, packed: list[list[int]], events: bool, labels, progress):
        """The streamed run: ``packed`` = each sample's input queue words."""
        from plasticore.runs import CompactResult, predict

        img = self._need()[1]
        why = self.why_not_stream(b, events)
        if why is not None:
            raise DeviceError(f"cannot stream this bundle: {why}")
        eng = self.engine()
        sizes = [len(w) for w in packed]
        if sizes and max(sizes) > eng.in_words:
            s = int(np.argmax(sizes))
            raise DeviceError(f"sample {s} takes {sizes[s]} input queue words, the engine's queue holds "
                              f"{eng.in_words}")
        S, n_out = len(packed), b.layers[-1].n_out
        rec = M.record_words(n_out)
        u_out = np.zeros((S, n_out), np.int32)
        t0 = time.perf_counter()
        with self._during("stream (configuring the engine)"):
            self._configure_engine(b, img, rec, events)
            self.bus.sync()
        w0 = self.bus.wire_bytes()  # (after the configuration: the samples' own bytes)
        # records read at once: most of what the queue holds, while the rest keeps the engine busy for a
        # round trip
        cap = eng.in_words // max(1, -(-sum(sizes) // max(1, S)))
        batch = max(1, min(cap * 3 // 4, eng.res_words // rec))
        sent = got = queued = 0  # queued: words of the samples sent and not read back (an upper bound)
        with self._during("stream"):
            while got < S:
                n = 0
                while sent + n < S and queued + sizes[sent + n] <= eng.in_words:
                    queued += sizes[sent + n]
                    n += 1
                if n:
                    self.bus.write_fix(M.engine_addr(M.EngineReg.IN), [w for p in packed[sent:sent + n] for w in p])
                    sent += n
                # a batch of records: the window read waits on the chip for each word (the engine runs
                # the rest of the queue meanwhile); OUT_EMPTY words are records only if they exist
                n = min(batch, sent - got)
                win = self.bus.read(M.engine_addr(M.EngineReg.RES_NEXT), n * rec)
                if M.OUT_EMPTY in win:
                    count = self.bus.read(M.engine_addr(M.EngineReg.RES_COUNT), 1)[0]
                    if count < n:
                        raise DeviceError(f"the sample engine stopped with {sent - got} samples queued and "
                                          f"{count} records")
                self.bus.write(M.engine_addr(M.EngineReg.RES_ACK), [n])
                for r in range(n):
                    u_out[got + r] = M.unpack_record(win[r * rec:(r + 1) * rec], n_out)
                queued -= sum(sizes[got:got + n])
                got += n
                if progress is not None:
                    progress(n)
        if w0 is not None:  # the samples' bytes (not the configuration, not the final H read: once per run)
            w1 = self.bus.wire_bytes()
            self.stats["stream_wire_bytes"] = (w1[0] - w0[0], w1[1] - w0[1])
        with self._during("stream (reading the final weights)"):
            errors = self.bus.read(M.engine_addr(M.EngineReg.ERRORS), 1)[0]
            if errors:
                raise DeviceError(f"the chip rejected {errors} requests of its sample engine")
            h_final = self._final_h(b)
        self._count(t0, S, b.timesteps)
        preds = predict(b, u_out.astype(np.int64), np.zeros_like(u_out))
        return CompactResult(u_out, h_final, preds, None if labels is None else np.asarray(labels, np.int64))

    def _configure_engine(self, b: Bundle, img: ChipImage, rec: int, events: bool) -> None:
        """STEPS, INPUTS, the layer-0 cores, the output slices, the record size, the coding (events, the
        ramp, or the generator's Weyl value of sample 0)."""
        from plasticore.coding import rate_weyl

        E, a = M.EngineReg, M.engine_addr
        out = [sl for sl in img.placement.slices if sl.layer == len(b.layers) - 1]
        self.bus.write(a(E.STEPS), [0])  # (nothing starts while the tables change)
        if eng_h0 := self._h0_runs(b, img.placement):  # the H0 store: H := H0 at every sample start
            self.bus.write(a(E.H0_RUNS), [0])
            self.bus.write_fix(a(E.H0_IN), [w for _, words in eng_h0 for w in words])
            self.bus.write(a(E.H0_RUN_BASE), [v for addr, words in eng_h0 for v in (addr, len(words))])
            self.bus.write(a(E.H0_RUNS), [len(eng_h0)])
        elif self.engine().h0_words:
            self.bus.write(a(E.H0_RUNS), [0])
        if events:
            self.bus.write(a(E.CODING), [M.EngineCoding.EVENTS])
        elif b.coding.kind == "rate":
            self.bus.write(a(E.CODING), [M.EngineCoding.RATE, int(rate_weyl(b.coding.seed, 0))])  # CODING, RNG
        else:
            self.bus.write(a(E.CODING), [M.EngineCoding.DIRECT])
            self.bus.write(a(E.RAMP_BASE), [int(r) for r in b.coding.ramp])
        self.bus.write(a(E.X_CORE_BASE), list(img.placement.layer_cores[0]))
        self.bus.write(a(E.U_SLICE_BASE), [M.u_slice_word(sl.core, sl.j1 - sl.j0) for sl in out])
        self.bus.write(a(E.INPUTS), [b.n_in, len(img.placement.layer_cores[0]), len(out), rec])  # INPUTS..RECORD_WORDS
        self.bus.write(a(E.STEPS), [b.timesteps])
