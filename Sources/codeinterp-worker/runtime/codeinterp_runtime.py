"""codeinterp's Python runtime: runs model-written code in a forked child, as a notebook cell would.

The zygote worker (Swift, embedding libpython3) loads this module once at start, then calls:

    preload(modules: list[str]) -> tuple[list[str], list[str]]
        Import each module; return (loaded, failed). Never raises.
    warmup() -> None
        In the zygote: one numpy matmul and one matplotlib figure rendered to PNG in memory and closed,
        so BLAS, fonts and caches are loaded before fork() and shared by every child. Never raises.
    after_fork() -> None
        In each child, before user code: reseed `random` and numpy's legacy global RandomState (the child
        would otherwise repeat the zygote's sequence), and make stdout/stderr line-buffered UTF-8 so that
        output streams live.
    execute(code: str, result_fd: int, keep_open: bool = False, one_shot: bool = False) -> None
        Run `code` in the namespace of `__main__` and write one `display` frame per figure or image shown
        (its PNG bytes), then ONE compact JSON object to result_fd as the payload of an `outcome` frame (the
        wire protocol's framing, see _frame), then close it unless keep_open (a session's interpreter writes
        every cell's outcome to the same descriptor, and the worker follows each with a `usage` frame). The
        reader must drain the descriptor while the code runs: the frames can exceed a pipe's buffer:
            {"result": {"text/plain": "...", "text/html": "..."} | null,
             "error": {"name": "ZeroDivisionError", "value": "division by zero",
                       "traceback": ["Traceback (most recent call last):", "  File \"<cell-1>\", ..."]} | null,
             "displays": [{"mime_type": "image/png"}]}   (the i-th display's bytes: the i-th display frame)

Cell semantics (what model-written code expects from Jupyter and hosted interpreters):
- CRLF and CR line endings become LF. If the last statement is an expression, its value (unless None) is
  the result: text/plain from repr(), text/html from _repr_html_() when the object has one (a DataFrame).
  A trailing `;` suppresses the value, as in Jupyter. Top-level `await` runs on one event loop per process.
- The source is registered in linecache as "<cell-N>" (N counts the cells of this process, so in a session
  each cell's tracebacks show that cell's lines). Tracebacks leave out this module's frames; `traceback`
  holds the formatted lines, to be joined with "\n". Syntax errors are errors like any other.
- SystemExit with code 0, False or None is success; any other code is an error named SystemExit.
- If repr() of the value raises, that exception is the error and text/plain falls back to object.__repr__;
  if _repr_html_() raises, text/html is left out.
- Caps: text/plain and error values at 64 KiB (with a marker saying how much was cut); text/html is left
  out above 256 KiB (cut HTML is broken HTML); tracebacks at 300 lines; 20 displays per cell (further
  figures are closed without being rendered).

Figures and images become PNG displays (figures at dpi 100 with bbox_inches="tight"):
- plt.show(), whatever the import path (pyplot's `show` is replaced as pyplot is imported), renders every
  open figure and closes it; Figure.show() renders that figure. Figures still open when the cell ends are
  rendered and closed, including those already saved with savefig. A figure is displayed at most once per
  cell unless display() is called on it again; figures without axes are skipped, as Jupyter does.
- PIL.Image.Image.show() becomes a display instead of launching a viewer (there is no screen).
- A Figure or a PIL image that is the cell's value is displayed as well.

Helpers offered to code written for ChatGPT's sandbox:
- builtin display(*objs): matplotlib figures and PIL images become displays; anything else, DataFrames
  included, is printed to stdout as its repr() (what Jupyter shows as text/plain). Keyword arguments of
  IPython's display() are accepted and ignored.
- modules `ace_tools` and `caas_jupyter_tools`, with display_dataframe_to_user(name, dataframe): there is
  no interactive table to show, so it prints the name and the frame (pandas' own truncated repr) to stdout
  and returns dataframe.head(), which becomes the result, HTML table included, when the call ends the cell.
- input() raises EOFError at once, saying that nobody is there to answer.

Nothing here writes to stdout or stderr except on behalf of the user's code. Importing this module needs
only the standard library; numpy, matplotlib and PIL are used only once something else has imported them.
"""

import ast
import builtins
import gc
import importlib
import io
import json
import linecache
import os
import re
import struct
import sys
import time
import traceback
import types

_MAX_TEXT = 64 * 1024
_MAX_HTML = 256 * 1024
_MAX_DISPLAYS = 20
_MAX_TRACEBACK_LINES = 300
_MAX_TRACEBACK_LINE = 8 * 1024
_FIGURE_DPI = 100

_CELL_PREFIX = "<cell-"
_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE: the cell awaits at top level (inspect is slow to import)
_RUNTIME_FILE = (lambda: None).__code__.co_filename  # how this module's frames are named in tracebacks
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")

# Frames, as every pipe between the engine and the worker carries them (FrameKind in
# Sources/InterpreterCore/WireProtocol.swift): u32 length of what follows | u8 kind | u32 job (0 here) | payload,
# little endian.
_FRAME_OUTCOME = 30    # on the result descriptor: the cell's RuntimeOutcome JSON
_FRAME_DISPLAY = 32    # on the result descriptor, before the outcome: one display's bytes, in the displays' order
_FRAME_PRIMED = 33     # on the result descriptor, between cells: prime() is done
_FRAME_SIGNALLED = 41  # on the report descriptor: i32, the signal the interpreter died of


def _frame_header(kind, payload_length):
    return struct.pack("<IBI", 5 + payload_length, kind, 0)


def _frame(kind, payload):
    return _frame_header(kind, len(payload)) + payload


# Bound now, before any user code: a cell that replaces json.dumps (or its default encoder) must not be able to
# garble the outcome the engine reads.
_encode_outcome = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# Written when even the JSON encoder fails (out of memory, say): the reader still gets an answer.
_FALLBACK_OUTCOME = (b'{"result":null,"error":{"name":"RuntimeError","value":"codeinterp runtime: '
                     b'the outcome could not be encoded","traceback":[]},"displays":[]}')

# matplotlib reads MPLBACKEND when first imported: there is no screen, so default to Agg.
os.environ.setdefault("MPLBACKEND", "Agg")


class _Cell:
    """Displays collected while one cell runs."""

    def __init__(self):
        # {"mime_type": ...} per display, for the outcome; their bytes travel in frames of their own (images).
        self.displays = []
        self.images = []
        # Figures and images displayed so far, by id (PIL images are unhashable); holding them keeps ids unique.
        self._shown = {}

    def mark_shown(self, obj):
        self._shown[id(obj)] = obj

    def was_shown(self, obj):
        return id(obj) in self._shown


_cell = _Cell()
_cell_count = 0
_event_loop = None


# --- Interface called by the Swift worker -------------------------------------------------------------

def preload(modules, packages=None):
    """Import each module; return (loaded, failed). Never raises. `packages`: the operator's package directory,
    put on sys.path after the system's (so it adds modules but cannot replace the ones Debian ships)."""
    if packages and os.path.isdir(packages) and packages not in sys.path:
        sys.path.append(packages)
    loaded, failed = [], []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException:  # a module that cannot be imported is reported, never fatal to the zygote
            failed.append(name)
        else:
            loaded.append(name)
    return loaded, failed


def warmup():
    """Exercise BLAS and the matplotlib renderer once, so children inherit warm pages. Never raises."""
    try:
        import numpy
        matrix = numpy.ones((64, 64))
        matrix @ matrix
    except BaseException:
        pass  # numpy missing or broken: nothing to warm
    try:
        import matplotlib.pyplot as pyplot
        figure, axes = pyplot.subplots()
        try:
            axes.plot([0, 1, 2], [0, 1, 4], label="warmup")
            axes.set_title("warmup")
            axes.legend()
            _figure_png(figure)
        finally:
            pyplot.close(figure)  # a figure left open would show up in every child's first cell
    except BaseException:
        pass  # matplotlib missing or broken: nothing to warm
    # Everything imported so far is shared with every child: kept out of the collector's way, no collection (in
    # the zygote or a child) writes to those objects' pages, which would copy them in every child and split the
    # zygote's huge pages.
    gc.collect()
    gc.freeze()


def after_fork():
    """Prepare a freshly forked child for user code."""
    random = sys.modules.get("random")
    if random is not None:
        random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(None)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            try:
                stream.reconfigure(encoding="utf-8", errors=stream.errors, line_buffering=True)
            except (OSError, ValueError):
                pass  # a closed stream: the child has nowhere to print anyway
    if os.getpid() == 1:  # pid 1 of its own namespace: /tmp is this execution's own
        _install_pip_stub("/tmp/.codeinterp/python")
    _rehearse_cell()


def _rehearse_cell(source="print(end='')\nNone\n"):
    """Run a throwaway cell through the whole cell path once, while the child waits for its execution.

    A forked child shares the zygote's memory until it writes to it, and its first write to each page copies the
    page: its first cell pays for every page that compiling, running, capturing and encoding a cell touches
    (measured in a fork of a Python with the scientific stack imported: ~180 page faults for the first print(1)
    cell, 2 to 35 for the next ones). Paid here, before the execution arrives, that is off the request path; it
    costs each waiting child those pages (under 1 MB). Leaves nothing behind: no output, no variable, no open
    figure, the cell counter and line cache as they were."""
    global _cell, _cell_count
    count = _cell_count
    namespace = sys.modules["__main__"].__dict__
    names = set(namespace)
    try:
        _cell = _Cell()
        outcome = {"result": None, "error": None, "displays": _cell.displays}
        _run_cell(source, outcome)
        _encode_outcome(outcome)
    except BaseException:
        pass  # a rehearsal that fails costs the first cell its pages, nothing else
    finally:
        for name in set(namespace) - names:
            del namespace[name]
        linecache.cache.pop(f"{_CELL_PREFIX}{_cell_count}>", None)
        _cell_count = count
        _cell = _Cell()


# A chart as a model writes one, shown as the cell's figure: pyplot, an axes, a line, a title, a legend, a PNG.
_PRIME_CHART = (
    "import matplotlib.pyplot as _prime_plt\n"
    "_prime_figure, _prime_axes = _prime_plt.subplots(figsize=(6, 4))\n"
    "_prime_axes.plot(range(50), [i * i for i in range(50)], label='prime')\n"
    "_prime_axes.set_title('prime')\n"
    "_prime_axes.set_xlabel('x')\n"
    "_prime_axes.legend()\n"
)


def prime(result_fd):
    """Render a throwaway chart through the cell path, then say so on `result_fd` (a `primed` frame).

    A stateless child's chart pays for the pages of the zygote that rendering writes (~2,800 page copies for a
    first chart in a fork of a warm interpreter, ~20 ms here); the engine asks one waiting child of each pool to pay
    them ahead, which costs that child ~13 MB of private memory. Nothing is left behind (see _rehearse_cell), and
    nothing is imported that the zygote did not preload: without pyplot there is nothing to prime."""
    if "matplotlib.pyplot" in sys.modules:
        _rehearse_cell(_PRIME_CHART)
        # The fonts it opened stay open in matplotlib's cache: closed, so the cell finds only its own descriptors
        # (opening a font again is cheap next to the pages the render has already copied).
        font_manager = sys.modules.get("matplotlib.font_manager")
        clear = getattr(getattr(font_manager, "_get_font", None), "cache_clear", None)
        if clear is not None:
            clear()
            gc.collect()  # an FT2Font closes its file when it is freed
    try:
        os.write(result_fd, _frame(_FRAME_PRIMED, b""))
    except OSError:
        pass  # the engine is gone: nobody will hand this child a cell


PIP_MESSAGE = (
    "pip cannot install packages in this sandbox: it has no network access and its Python is read-only. "
    "Preloaded: numpy, pandas, matplotlib, scipy, seaborn, scikit-learn, sympy, openpyxl, Pillow, reportlab; "
    "every Python package installed on the server (for example with `apt install python3-NAME`) can be "
    "imported too. To add another one, ask the operator of this codeinterp server to install it there; "
    "otherwise, solve the task with the packages at hand."
)


def _install_pip_stub(directory):
    """`import pip`, `python3 -m pip` and the `pip` script (which imports pip) explain what to do instead of
    failing on the network or on Debian's externally-managed marker."""
    try:
        os.makedirs(os.path.join(directory, "pip"), exist_ok=True)
        with open(os.path.join(directory, "pip", "__init__.py"), "w") as f:
            f.write(
                "import os, sys\n"
                "MESSAGE = %r\n"
                "# Run as a program (python3 -m pip, the pip script): say it and fail; imported: an ImportError.\n"
                "if sys.argv and (sys.argv[0] == '-m' or os.path.basename(sys.argv[0]).startswith('pip')):\n"
                "    sys.stderr.write(MESSAGE + '\\n')\n"
                "    sys.exit(1)\n"
                "raise ImportError(MESSAGE)\n" % PIP_MESSAGE)
    except OSError:
        return  # no writable /tmp: pip fails as it would anyway
    sys.path.insert(0, directory)
    os.environ["PYTHONPATH"] = directory + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


def execute(code, result_fd, keep_open=False, one_shot=False):
    """Run `code` as a notebook cell in __main__ and write the outcome as JSON to result_fd, closed after
    unless keep_open (a session's interpreter, which answers many cells on the same descriptor).

    A process that user code forked (os.fork, multiprocessing) and that reaches the end of the cell ends
    there, without an outcome: the execution is the main process's. one_shot: the interpreter ends after this
    cell, and its pid namespace with it; processes it forked get a moment to finish first, as they would have
    printed before a short script's interpreter exits."""
    global _cell
    outcome = {"result": None, "error": None, "displays": []}
    main = os.getpid()
    try:
        _cell = _Cell()
        outcome["displays"] = _cell.displays
        _run_cell(code.replace("\r\n", "\n").replace("\r", "\n"), outcome)
    except BaseException as exc:  # a failure of this runtime itself, or an interrupt while it finishes up
        outcome["error"] = _internal_error(exc)
    if os.getpid() != main:
        _flush_streams()
        os._exit(0)
    if one_shot:
        _wait_for_forked(0.1)
    _write_outcome(outcome, result_fd, keep_open, _cell.images)


def _wait_for_forked(seconds):
    """Reap the processes this one forked that end within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except OSError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)


def _flush_streams():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass  # closed, None or replaced by the user's code: nothing to flush


# --- Running a cell ------------------------------------------------------------------------------------

def _run_cell(source, outcome):
    global _cell_count
    _cell_count += 1
    filename = f"{_CELL_PREFIX}{_cell_count}>"
    # Lines split like the tokenizer splits them (splitlines() would also split at \f and friends).
    # mtime None keeps linecache.checkcache() from discarding the entry.
    linecache.cache[filename] = (len(source), None, [line + "\n" for line in source.split("\n")], filename)
    namespace = sys.modules["__main__"].__dict__

    try:
        body, last = _compile_cell(source, filename)
    except Exception as exc:  # SyntaxError mostly; also ValueError (null bytes), RecursionError (nesting)
        outcome["error"] = _user_error(exc, keep_frames=False)
        return

    value = None
    try:
        _run_code(body, namespace)
        if last is not None:
            value = _run_code(last, namespace)
    except SystemExit as exc:
        if not (exc.code is None or (isinstance(exc.code, int) and exc.code == 0)):  # what exits with status 0
            outcome["error"] = _user_error(exc)
    except BaseException as exc:
        outcome["error"] = _user_error(exc)

    if value is not None:
        outcome["result"] = _mime_bundle(value, outcome)

    # Like Jupyter's inline backend: figures left open are shown (even after an error), then closed.
    try:
        _capture_open_figures()
        if _is_figure(value) and not _cell.was_shown(value) and _has_content(value):
            _show_figure(value)
        elif _is_pil_image(value) and not _cell.was_shown(value):
            _show_image(value)
    except BaseException as exc:
        if outcome["error"] is None:
            outcome["error"] = _user_error(exc)


def _compile_cell(source, filename):
    """Compile the cell: (code for all statements, code for the last expression or None)."""
    tree = ast.parse(source, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not _ends_with_semicolon(source, tree.body[-1]):
        last = ast.Expression(tree.body.pop().value)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
    if last is not None:
        last = compile(last, filename, "eval", flags=flags, dont_inherit=True)
    return body, last


def _ends_with_semicolon(source, node):
    """Whether a ';' follows the last expression: Jupyter's way to run it without showing its value."""
    lines = source.split("\n")
    # ast column offsets count UTF-8 bytes.
    tail = lines[node.end_lineno - 1].encode("utf-8")[node.end_col_offset:].decode("utf-8", "replace")
    return "\n".join([tail, *lines[node.end_lineno:]]).lstrip().startswith(";")


def _run_code(code, namespace):
    """Evaluate compiled cell code; code that awaits at top level yields a coroutine, run to completion."""
    value = eval(code, namespace)
    if code.co_flags & _CO_COROUTINE:
        value = _get_event_loop().run_until_complete(value)
    return value


def _get_event_loop():
    # One loop for the whole process, as in Jupyter: objects bound to it survive from cell to cell.
    global _event_loop
    import asyncio
    if _event_loop is None or _event_loop.is_closed():
        _event_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_event_loop)
    return _event_loop


def _mime_bundle(value, outcome):
    try:
        text = repr(value)
    except BaseException as exc:
        outcome["error"] = _user_error(exc)
        text = object.__repr__(value)
    bundle = {"text/plain": _cap(text)}
    try:
        html = value._repr_html_()
    except BaseException:
        html = None  # no _repr_html_, or a broken one: text/plain says enough
    if isinstance(html, str) and len(html) <= _MAX_HTML:
        bundle["text/html"] = html
    return bundle


# --- Errors --------------------------------------------------------------------------------------------

def _user_error(exc, keep_frames=True):
    """The error object for an exception raised by the user's code (or by parsing it)."""
    report = traceback.TracebackException.from_exception(exc)
    _strip_frames(report, keep_frames, set())
    lines = "".join(report.format()).splitlines()
    if len(lines) > _MAX_TRACEBACK_LINES:
        head = 50
        tail = _MAX_TRACEBACK_LINES - head
        lines = [*lines[:head], f"... [{len(lines) - head - tail} traceback lines omitted] ...", *lines[-tail:]]
    return {
        "name": type(exc).__name__,
        "value": _cap(_safe_str(exc)),
        "traceback": [_cap(_ANSI_ESCAPE.sub("", line), _MAX_TRACEBACK_LINE) for line in lines],
    }


def _strip_frames(report, keep_frames, seen):
    """Drop what precedes the user's first cell frame and this module's frames, through the whole chain."""
    if id(report) in seen:
        return
    seen.add(id(report))
    frames = list(report.stack) if keep_frames else []
    first_cell = next((i for i, frame in enumerate(frames) if frame.filename.startswith(_CELL_PREFIX)), 0)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in frames[first_cell:] if frame.filename != _RUNTIME_FILE])
    for chained in (report.__cause__, report.__context__, *(getattr(report, "exceptions", None) or ())):
        if chained is not None:
            _strip_frames(chained, True, seen)


def _internal_error(exc):
    try:
        lines = "".join(traceback.format_exception(exc)).splitlines()
        return {"name": type(exc).__name__, "value": "codeinterp runtime failure: " + _safe_str(exc),
                "traceback": lines}
    except BaseException:
        return {"name": "RuntimeError", "value": "codeinterp runtime failure", "traceback": []}


def _safe_str(exc):
    try:
        return str(exc)
    except BaseException:
        return f"<{type(exc).__name__}: str() failed>"


def _cap(text, limit=_MAX_TEXT):
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n... [truncated: {len(text) - limit} more characters]"


# --- Output --------------------------------------------------------------------------------------------

def _write_outcome(outcome, fd, keep_open=False, images=()):
    """The display frames (raw bytes: base64 inside the JSON cost ~2 ms per figure, most of it json's encoder
    with ensure_ascii=False going over the base64 text), then the outcome frame, which ends the cell."""
    # The user's prints must reach their pipes before the server reads the outcome.
    _flush_streams()
    try:
        # ensure_ascii=False keeps it compact; lone surrogates cannot be UTF-8 and become "?".
        data = _encode_outcome(outcome).encode("utf-8", "replace")
    except BaseException:
        data = _FALLBACK_OUTCOME
    try:
        # Each header on its own: an image or a long outcome is not copied once more to prepend it.
        chunks = []
        for image in images:
            chunks += [_frame_header(_FRAME_DISPLAY, len(image)), image]
        for chunk in chunks + [_frame_header(_FRAME_OUTCOME, len(data)), data]:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
    except OSError:
        pass  # the reader is gone: there is nobody left to tell
    finally:
        if not keep_open:
            try:
                os.close(fd)
            except OSError:
                pass


# --- Figures, images and display() ---------------------------------------------------------------------

def _is_figure(obj):
    module = sys.modules.get("matplotlib.figure")
    return module is not None and isinstance(obj, module.Figure)


def _is_pil_image(obj):
    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(obj, module.Image)


def _has_content(figure):
    # Jupyter's test too: a figure with nothing drawn on it (plt.figure() alone) is not worth an image.
    return bool(figure.axes or figure.lines)


def _add_png(png):
    _cell.displays.append({"mime_type": "image/png"})
    _cell.images.append(png)


def _figure_png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_FIGURE_DPI, bbox_inches="tight")
    return buffer.getvalue()


def _show_figure(figure):
    _cell.mark_shown(figure)
    if len(_cell.displays) < _MAX_DISPLAYS:
        _add_png(_figure_png(figure))


def _show_image(image):
    _cell.mark_shown(image)
    if len(_cell.displays) >= _MAX_DISPLAYS:
        return
    buffer = io.BytesIO()
    try:
        image.save(buffer, format="PNG")
    except (OSError, ValueError):  # a mode PNG cannot hold (CMYK, F, YCbCr...): convert it
        buffer = io.BytesIO()
        image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buffer, format="PNG")
    _add_png(buffer.getvalue())


def _capture_open_figures():
    """Display every open pyplot figure not yet displayed in this cell, then close them all."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    from matplotlib._pylab_helpers import Gcf
    failure = None
    for manager in sorted(Gcf.get_all_fig_managers(), key=lambda manager: manager.num):
        figure = manager.canvas.figure
        try:
            if not _cell.was_shown(figure) and _has_content(figure):
                _show_figure(figure)
        except Exception as exc:  # one figure that fails to draw must not cost the others
            failure = failure or exc
        finally:
            pyplot.close(figure)
    if failure is not None:
        raise failure


def display(*objs, **kwargs):
    """Show objects as Jupyter's display() would: figures and PIL images as PNG displays, anything else
    printed to stdout as its repr(). IPython's keyword arguments (include, display_id...) are ignored."""
    for obj in objs:
        if _is_figure(obj):
            _show_figure(obj)
        elif _is_pil_image(obj):
            _show_image(obj)
        else:
            print(repr(obj))


def display_dataframe_to_user(name, dataframe):
    """Show a table to the user, as ChatGPT's ace_tools does: here, print the name and the frame (pandas
    truncates long ones) to stdout; return its first rows, the result when the call ends the cell."""
    print(name)
    print(repr(dataframe))
    head = getattr(dataframe, "head", None)
    return head() if callable(head) else dataframe


def _input(prompt=""):
    """input() for code that runs unattended: fail at once rather than wait for an answer that never comes."""
    sys.stdout.write(str(prompt))
    raise EOFError("input() is not available: this code runs without an interactive user; "
                   "set the values in the code instead")


# --- Patching headless-hostile APIs as their modules are imported ---------------------------------------

def _patch_pyplot(pyplot):
    def show(*args, **kwargs):
        """Display every open figure as a PNG and close it (codeinterp has no screen)."""
        _capture_open_figures()
    pyplot.show = show


def _patch_figure_module(figure_module):
    def show(self, warn=True):
        """Display this figure as a PNG (codeinterp has no screen)."""
        _show_figure(self)
    figure_module.Figure.show = show


def _patch_pil_image(image_module):
    def show(self, title=None):
        """Display this image as a PNG instead of launching a viewer (codeinterp has no screen)."""
        _show_image(self)
    image_module.Image.show = show


_PATCHES = {
    "matplotlib.pyplot": _patch_pyplot,
    "matplotlib.figure": _patch_figure_module,
    "PIL.Image": _patch_pil_image,
}


def _apply_patch(module):
    try:
        _PATCHES[module.__name__](module)
    except Exception:
        pass  # a library version laid out differently: leave it unpatched rather than break its import


class _PatchingLoader:
    """Wraps a module's loader to patch the module right after it has executed."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_source, get_resource_reader...: the wrapped loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _apply_patch(module)


class _PatchOnImport:
    """Meta path finder: lets the other finders find the modules of _PATCHES, and wraps their loaders."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _PATCHES:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


# --- Signals to itself, as pid 1 ------------------------------------------------------------------------

# The interpreter is pid 1 of its execution's pid namespace, and the kernel ignores the signals pid 1 sends
# itself unless it handles them. A snippet that kills itself expects to die, so these calls make it so:
# the signal is sent as asked, and if it was fatal by default and unhandled, the interpreter reports it on
# the sandbox's report descriptor and ends.
_REPORT_FD = 5
_NOT_FATAL = {"SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU"}


def _die_if_fatal(sig):
    import signal
    try:
        sig = int(sig)
        name = signal.Signals(sig).name
    except (ValueError, TypeError):
        return
    if sig == 0 or name in _NOT_FATAL:
        return
    if sig not in (signal.SIGKILL,) and signal.getsignal(sig) not in (signal.SIG_DFL, None):
        return  # handled (or ignored) by the user's code: it ran, or was meant not to
    _flush_streams()
    try:
        os.write(_REPORT_FD, _frame(_FRAME_SIGNALLED, struct.pack("<i", sig)))
    except OSError:
        pass
    os._exit(128 + sig)


def _patch_self_signals():
    real_kill, real_killpg = os.kill, os.killpg
    import signal
    real_raise = signal.raise_signal

    def kill(pid, sig):
        real_kill(pid, sig)
        if os.getpid() == 1 and pid in (0, 1):
            _die_if_fatal(sig)

    def killpg(pgid, sig):
        real_killpg(pgid, sig)
        if os.getpid() == 1 and pgid in (0, os.getpgrp()):
            _die_if_fatal(sig)

    def raise_signal(sig):
        real_raise(sig)
        if os.getpid() == 1:
            _die_if_fatal(sig)

    kill.__doc__, killpg.__doc__, raise_signal.__doc__ = real_kill.__doc__, real_killpg.__doc__, real_raise.__doc__
    os.kill, os.killpg, signal.raise_signal = kill, killpg, raise_signal


def _install():
    for name in _PATCHES:
        if name in sys.modules:
            _apply_patch(sys.modules[name])
    sys.meta_path.insert(0, _PatchOnImport())
    builtins.display = display
    builtins.input = _input
    _patch_self_signals()
    for name in ("ace_tools", "caas_jupyter_tools"):
        module = types.ModuleType(name, "codeinterp's stand-in for ChatGPT's sandbox helpers.")
        module.display_dataframe_to_user = display_dataframe_to_user
        sys.modules[name] = module


_install()
