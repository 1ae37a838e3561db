"""Tests of the worker's Python runtime (Sources/codeinterp-worker/runtime/codeinterp_runtime.py).

execute() mutates __main__ and writes to a descriptor, so every case runs in a fresh interpreter: a
harness loads the runtime from its path, calls after_fork() as the zygote's child does, then execute()
once per cell, each with its own pipe as result_fd. stdin is /dev/null, as in the sandbox.

Run from the repository root: /usr/bin/python3 -m unittest discover -s Tests/runtime -v
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNTIME = os.path.join(REPO, "Sources", "codeinterp-worker", "runtime", "codeinterp_runtime.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
TIMEOUT = 120

# Loads the runtime as the module "codeinterp_runtime"; defines `runtime` in the script's namespace.
LOAD_RUNTIME = textwrap.dedent("""\
    import importlib.util, sys
    _spec = importlib.util.spec_from_file_location("codeinterp_runtime", sys.argv[1])
    runtime = importlib.util.module_from_spec(_spec)
    sys.modules["codeinterp_runtime"] = runtime
    _spec.loader.exec_module(runtime)
    """)

# Runs cells as the worker's child would. Everything lives in one function so that the user's code sees
# a clean __main__ (only `_harness` is defined in it).
HARNESS = textwrap.dedent("""\
    def _harness():
        import importlib.util, json, os, sys
        options = json.loads(sys.argv[2])
        for name in options["block"]:
            sys.modules[name] = None  # makes `import name` raise ImportError
        spec = importlib.util.spec_from_file_location("codeinterp_runtime", sys.argv[1])
        runtime = importlib.util.module_from_spec(spec)
        sys.modules["codeinterp_runtime"] = runtime
        spec.loader.exec_module(runtime)
        runtime.after_fork()
        for code, fd in zip(options["cells"], options["fds"]):
            runtime.execute(code, fd)
            try:
                os.fstat(fd)
            except OSError:
                continue
            os._exit(99)  # execute() must close result_fd
    _harness()
    """)


def setUpModule():
    global ENV, _MPLCONFIGDIR
    _MPLCONFIGDIR = tempfile.mkdtemp(prefix="codeinterp-mpl-")
    ENV = dict(os.environ, MPLBACKEND="Agg", MPLCONFIGDIR=_MPLCONFIGDIR, OPENBLAS_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    ENV.pop("PYTHONSTARTUP", None)


def tearDownModule():
    shutil.rmtree(_MPLCONFIGDIR, ignore_errors=True)


class Run:
    def __init__(self, outcomes, images, stdout, stderr):
        self.outcomes = outcomes
        self.images = images  # per cell, the bytes of its displays
        self.stdout = stdout
        self.stderr = stderr

    @property
    def outcome(self):
        return self.outcomes[-1]

    @property
    def result(self):
        return self.outcome["result"]

    @property
    def error(self):
        return self.outcome["error"]

    @property
    def pngs(self):
        return self.images[-1]


def _frames(data):
    """(kind, job, payload) of each frame in `data`, which must hold whole frames only."""
    frames = []
    while data:
        length, kind, job = struct.unpack("<IBI", data[:9])
        frames.append((kind, job, data[9:4 + length]))
        data = data[4 + length:]
    return frames


def _cell_frames(test, data):
    """A cell's result descriptor: its display frames (FrameKind.display, 32) then one outcome frame
    (FrameKind.outcome, 30), all with job 0; returns the outcome's JSON and the displays' bytes."""
    frames = _frames(data)
    test.assertTrue(frames, data)
    test.assertEqual([(kind, job) for kind, job, _ in frames], [(32, 0)] * (len(frames) - 1) + [(30, 0)], data[:64])
    outcome = json.loads(frames[-1][2])
    test.assertEqual(outcome["displays"], [{"mime_type": "image/png"}] * (len(frames) - 1))
    return outcome, [payload for _, _, payload in frames[:-1]]


def _read_all(fd, into, index):
    with os.fdopen(fd, "rb") as pipe:
        into[index] = pipe.read()


class RuntimeTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.workdir = tempfile.mkdtemp(prefix="codeinterp-data-")  # stands in for /mnt/data
        self.addCleanup(shutil.rmtree, self.workdir, ignore_errors=True)

    def run_cells(self, *cells, block=()):
        """Run the cells in one fresh child, in order; returns their outcomes and the child's output."""
        pipes = [os.pipe() for _ in cells]
        options = {"cells": list(cells), "fds": [write for _, write in pipes], "block": list(block)}
        process = subprocess.Popen(
            [PYTHON, "-c", HARNESS, RUNTIME, json.dumps(options)], cwd=self.workdir, env=ENV,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=options["fds"])
        raw = [b""] * len(cells)
        readers = [threading.Thread(target=_read_all, args=(read, raw, i)) for i, (read, _) in enumerate(pipes)]
        for (_, write), reader in zip(pipes, readers):
            os.close(write)
            reader.start()
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        finally:
            process.kill()
            for reader in readers:
                reader.join()
        stdout, stderr = stdout.decode(), stderr.decode()
        self.assertEqual(process.returncode, 0, f"harness failed (99: result_fd left open)\n{stderr}")
        outcomes, images = [], []
        for data in raw:
            outcome, pngs = _cell_frames(self, data)
            self.assertEqual(set(outcome), {"result", "error", "displays"}, data)
            outcomes.append(outcome)
            images.append(pngs)
        return Run(outcomes, images, stdout, stderr)

    def run_script(self, script):
        """Run a script that has `runtime` loaded; returns its stdout parsed as JSON."""
        process = subprocess.run(
            [PYTHON, "-c", LOAD_RUNTIME + textwrap.dedent(script), RUNTIME], cwd=self.workdir, env=ENV,
            stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
        self.assertEqual(process.returncode, 0, process.stderr.decode())
        return json.loads(process.stdout)

    def assert_png(self, data, size=None):
        self.assertTrue(data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16])
        if size is not None:
            self.assertEqual(struct.unpack(">II", data[16:24]), size)  # IHDR width, height

    def assert_clean_traceback(self, error, last_line=None):
        text = "\n".join(error["traceback"])
        self.assertNotIn("codeinterp_runtime", text)
        self.assertNotIn("\x1b[", text)
        self.assertEqual(error["traceback"][-1], last_line or f"{error['name']}: {error['value']}")
        return text


class CellValueTests(RuntimeTestCase):
    def test_last_expression_int(self):
        run = self.run_cells("x = 6\nx * 7")
        self.assertEqual(run.result, {"text/plain": "42"})
        self.assertIsNone(run.error)
        self.assertEqual(run.outcome["displays"], [])
        self.assertEqual(run.stdout, "")
        self.assertEqual(run.stderr, "")

    def test_last_expression_string_tuple_bytes(self):
        run = self.run_cells('"/mnt/data/report.csv"', '(1, "a", None)', 'b"\\x00ab"')
        self.assertEqual([outcome["result"] for outcome in run.outcomes],
                         [{"text/plain": "'/mnt/data/report.csv'"}, {"text/plain": "(1, 'a', None)"},
                          {"text/plain": "b'\\x00ab'"}])

    def test_the_rehearsed_cell_leaves_nothing_behind(self):
        # after_fork() runs a throwaway cell (to copy the pages a cell touches before the execution arrives): the
        # user's first cell must still be cell 1, see an empty namespace and the In/Out history of a fresh one.
        run = self.run_cells("sorted(k for k in globals() if not k.startswith('__'))", "1/0")
        self.assertEqual(run.outcomes[0]["result"], {"text/plain": "['_harness']"})
        self.assertIn('File "<cell-2>", line 1, in <module>', "\n".join(run.outcomes[1]["error"]["traceback"]))
        self.assertEqual(run.stdout, "")
        self.assertEqual(run.stderr, "")

    def test_prime_renders_a_chart_and_leaves_nothing_behind(self):
        # A waiting child primed by the engine (FrameKind.prime) renders a throwaway chart, then answers with one
        # `primed` frame (33). The execution that follows must find the child as an unprimed one: no figure open,
        # figure numbers from 1, no new name or module, the cell counter and line cache as they were.
        state = self.run_script("""
            import json, linecache, os, sys
            import matplotlib.pyplot as plt
            runtime.warmup()  # as the zygote does before it forks: what a render imports is imported already
            if os.fork() != 0:  # the parent is the zygote here; the child, a waiting child
                os._exit(os.waitstatus_to_exitcode(os.wait()[1]))
            runtime.after_fork()
            def snapshot():
                return {"names": sorted(globals()), "figures": plt.get_fignums(), "cell": runtime._cell_count,
                        "lines": sorted(linecache.cache), "modules": len(sys.modules),
                        "descriptors": sorted(os.listdir("/proc/self/fd"))}
            read, write = os.pipe()
            faults = before = after = None  # bound before the first snapshot, so both list the same names
            faults, before = open("/proc/self/stat").read().split()[9], snapshot()
            runtime.prime(write)
            after = snapshot()
            os.close(write)
            frames = os.read(read, 1024)
            number = plt.figure().number
            print(json.dumps({"before": before, "after": after, "frames": frames.hex(), "number": number,
                              "faulted": int(open("/proc/self/stat").read().split()[9]) - int(faults)}))
            """)
        self.assertEqual(state["after"], state["before"])
        self.assertEqual(bytes.fromhex(state["frames"]), struct.pack("<IBI", 5, 33, 0))
        self.assertEqual(state["number"], 1)
        self.assertGreater(state["faulted"], 100, "nothing was rendered")  # a chart's render touches many pages

    def test_prime_without_pyplot_imports_nothing(self):
        # A profile that does not preload matplotlib: priming must not import it into the child.
        state = self.run_script("""
            import json, os, sys
            runtime.after_fork()
            read, write = os.pipe()
            runtime.prime(write)
            os.close(write)
            print(json.dumps({"pyplot": "matplotlib.pyplot" in sys.modules, "frames": os.read(read, 64).hex()}))
            """)
        self.assertFalse(state["pyplot"])
        self.assertEqual(bytes.fromhex(state["frames"]), struct.pack("<IBI", 5, 33, 0))

    def test_none_value_and_statements_give_no_result(self):
        run = self.run_cells('print("hi")', "x = 1", "None")
        self.assertEqual([outcome["result"] for outcome in run.outcomes], [None, None, None])
        self.assertEqual(run.stdout, "hi\n")

    def test_trailing_semicolon_suppresses_value(self):
        run = self.run_cells("1 + 1;", "1 + 1  # not a semicolon;", "'é' + 'x' ;  # comment")
        self.assertEqual([outcome["result"] for outcome in run.outcomes], [None, {"text/plain": "2"}, None])

    def test_dataframe_has_html(self):
        run = self.run_cells("import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'n': [1, 2]})")
        self.assertIsNone(run.error)
        self.assertIn("<table", run.result["text/html"])
        self.assertIn("Oslo", run.result["text/html"])
        self.assertIn("city", run.result["text/plain"])

    def test_long_repr_is_capped(self):
        run = self.run_cells("'x' * 200_000")
        text = run.result["text/plain"]
        self.assertLess(len(text), 70_000)
        self.assertTrue(text.startswith("'xxx"))
        self.assertIn("[truncated: ", text)

    def test_crlf_and_cr_line_endings(self):
        run = self.run_cells("a = 1\r\nb = 2\r\nif a:\r\n    b += 1\r\na + b", "a = 1\rb = 2\ra + b")
        self.assertEqual([outcome["result"] for outcome in run.outcomes],
                         [{"text/plain": "4"}, {"text/plain": "3"}])

    def test_main_guard_runs(self):
        run = self.run_cells('def main():\n    print("main ran")\n\nif __name__ == "__main__":\n    main()')
        self.assertEqual(run.stdout, "main ran\n")
        self.assertIsNone(run.error)

    def test_top_level_await(self):
        run = self.run_cells("import asyncio\nawait asyncio.sleep(0)\nasync def f():\n    return 7\nawait f() * 6")
        self.assertIsNone(run.error)
        self.assertEqual(run.result, {"text/plain": "42"})

    def test_cells_share_state_and_keep_their_own_lines(self):
        run = self.run_cells("def f(x):\n    return 10 / x", "total = 1", "total += 1\nf(0)")
        self.assertEqual(run.outcome["error"]["name"], "ZeroDivisionError")
        text = self.assert_clean_traceback(run.error)
        self.assertIn('File "<cell-1>", line 2, in f', text)
        self.assertIn("    return 10 / x", text)
        self.assertIn('File "<cell-3>", line 2, in <module>', text)
        self.assertIn("    f(0)", text)
        self.assertEqual(self.run_cells("a = 1", "a + 1").result, {"text/plain": "2"})


class ErrorTests(RuntimeTestCase):
    def test_zero_division_traceback(self):
        run = self.run_cells("x = 1\ny = x/0")
        self.assertIsNone(run.result)
        self.assertEqual(run.error["name"], "ZeroDivisionError")
        self.assertEqual(run.error["value"], "division by zero")
        text = self.assert_clean_traceback(run.error)
        self.assertEqual(run.error["traceback"][0], "Traceback (most recent call last):")
        self.assertIn('File "<cell-1>", line 2, in <module>', text)
        self.assertIn("    y = x/0", text)

    def test_error_under_top_level_await_shows_only_user_frames(self):
        run = self.run_cells('import asyncio\nasync def g():\n    raise ValueError("boom")\nawait g()')
        text = self.assert_clean_traceback(run.error)
        self.assertEqual(run.error["traceback"][1], '  File "<cell-1>", line 4, in <module>')
        self.assertIn('    raise ValueError("boom")', text)
        self.assertNotIn("asyncio", text)

    def test_syntax_error(self):
        run = self.run_cells('print("not run")\nfor i in range(3)\n    print(i)')
        self.assertEqual(run.error["name"], "SyntaxError")
        self.assertEqual(run.error["value"], "expected ':' (<cell-1>, line 2)")
        text = self.assert_clean_traceback(run.error, last_line="SyntaxError: expected ':'")
        self.assertIn('File "<cell-1>", line 2', text)
        self.assertIn("for i in range(3)", text)
        self.assertEqual(run.stdout, "")

    def test_system_exit_zero_is_not_an_error(self):
        run = self.run_cells("import sys\nprint('a')\nsys.exit(0)\nprint('b')", "import sys\nsys.exit()",
                             "raise SystemExit(False)")
        self.assertEqual([outcome["error"] for outcome in run.outcomes], [None, None, None])
        self.assertEqual(run.stdout, "a\n")

    def test_system_exit_nonzero_is_an_error(self):
        run = self.run_cells("raise SystemExit(3)", "import sys\nsys.exit('bad input')")
        first, second = run.outcomes
        self.assertEqual((first["error"]["name"], first["error"]["value"]), ("SystemExit", "3"))
        self.assertEqual((second["error"]["name"], second["error"]["value"]), ("SystemExit", "bad input"))

    def test_keyboard_interrupt_is_an_error(self):
        run = self.run_cells("raise KeyboardInterrupt")
        self.assertEqual(run.error["name"], "KeyboardInterrupt")

    def test_exception_in_repr(self):
        run = self.run_cells(
            'class Bad:\n    def __repr__(self):\n        raise ValueError("no repr")\nBad()', "1 + 1")
        first, second = run.outcomes
        self.assertEqual(first["error"]["name"], "ValueError")
        self.assertEqual(first["error"]["value"], "no repr")
        self.assertIn('raise ValueError("no repr")', self.assert_clean_traceback(first["error"]))
        self.assertTrue(first["result"]["text/plain"].startswith("<__main__.Bad object at 0x"))
        self.assertEqual(second["result"], {"text/plain": "2"})  # the runtime is still fine

    def test_exception_in_repr_html_keeps_plain_text(self):
        run = self.run_cells("class Half:\n    def __repr__(self):\n        return 'half'\n"
                             "    def _repr_html_(self):\n        raise RuntimeError('no html')\nHalf()")
        self.assertEqual(run.result, {"text/plain": "half"})
        self.assertIsNone(run.error)

    def test_error_inside_display_hides_runtime_frames(self):
        run = self.run_cells('class Bad:\n    def __repr__(self):\n        raise ValueError("no repr")\n'
                             "display(Bad())")
        text = self.assert_clean_traceback(run.error)
        self.assertIn("display(Bad())", text)
        self.assertIn('raise ValueError("no repr")', text)

    def test_input_fails_fast(self):
        run = self.run_cells("name = input('Name? ')")
        self.assertEqual(run.error["name"], "EOFError")
        self.assertIn("input()", run.error["value"])
        self.assertEqual(run.stdout, "Name? ")

    def test_warnings_go_to_stderr(self):
        run = self.run_cells("import warnings\nwarnings.warn('careful with that')\n'done'")
        self.assertIn("UserWarning: careful with that", run.stderr)
        self.assertEqual(run.result, {"text/plain": "'done'"})
        self.assertEqual(run.stdout, "")

    def test_outcome_written_when_user_closes_stdout(self):
        run = self.run_cells("import sys\nprint('bye')\nsys.stdout.close()\n41 + 1")
        self.assertEqual(run.stdout, "bye\n")
        self.assertEqual(run.result, {"text/plain": "42"})


class FigureTests(RuntimeTestCase):
    def test_plt_show_gives_one_png_and_closes(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\n"
                             "plt.title('Sales')\nplt.show()\nlen(plt.get_fignums())", "plt.get_fignums()")
        first, second = run.outcomes
        self.assertIsNone(first["error"])
        self.assertEqual(first["result"], {"text/plain": "0"})  # show() closed the figure
        self.assertEqual(len(first["displays"]), 1)
        self.assertEqual(first["displays"][0]["mime_type"], "image/png")
        self.assert_png(run.images[0][0])
        self.assertEqual(second["result"], {"text/plain": "[]"})
        self.assertEqual(second["displays"], [])
        self.assertEqual(run.stderr, "")

    def test_show_from_any_import_path(self):
        run = self.run_cells("from matplotlib.pyplot import plot, show, close\nplot([1, 2])\nshow()\nclose()",
                             "import matplotlib\nimport matplotlib.pyplot\nmatplotlib.pyplot.plot([3])\n"
                             "matplotlib.pyplot.show()",
                             "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                             "plt.switch_backend('agg')\nplt.plot([4])\nplt.show()\nplt.close('all')")
        self.assertEqual([len(outcome["displays"]) for outcome in run.outcomes], [1, 1, 1])

    def test_show_renders_every_open_figure(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nplt.figure()\nplt.plot([1])\n"
                             "plt.figure()\nplt.bar(['a'], [2])\nplt.show()")
        self.assertEqual(len(run.pngs), 2)

    def test_open_figure_at_end_is_captured(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5])")
        self.assertEqual(len(run.pngs), 1)
        self.assert_png(run.pngs[0])

    def test_saved_but_open_figure_is_still_a_display(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('chart.png')")
        self.assertEqual(len(run.pngs), 1)
        with open(os.path.join(self.workdir, "chart.png"), "rb") as saved:
            self.assert_png(saved.read())

    def test_figure_as_value_is_displayed_once(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\nfig",
                             "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1])\n"
                             "plt.close(fig)\nfig")
        for outcome in run.outcomes:
            self.assertEqual(len(outcome["displays"]), 1)
            self.assertTrue(outcome["result"]["text/plain"].startswith("<Figure size"))

    def test_display_of_figure(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\n"
                             "display(fig)")
        self.assertEqual(len(run.pngs), 1)  # displayed by display(), not again when the cell ends
        self.assertIsNone(run.result)
        self.assertEqual(run.stdout, "")

    def test_figure_show_method(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\n"
                             "fig.show()\nplt.close(fig)")
        self.assertEqual(len(run.pngs), 1)  # rendered by show(), before close()
        self.assertEqual(run.stderr, "")

    def test_figure_captured_after_error(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n1/0")
        self.assertEqual(run.error["name"], "ZeroDivisionError")
        self.assertEqual(len(run.pngs), 1)

    def test_empty_figure_is_skipped(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3))\nplt.figure()")
        self.assertEqual(run.pngs, [])
        self.assertEqual(run.result, {"text/plain": "<Figure size 640x480 with 0 Axes>"})

    def test_display_count_is_capped(self):
        run = self.run_cells("import matplotlib.pyplot as plt\nfor i in range(25):\n"
                             "    plt.plot([i, i + 1])\n    plt.show()\nlen(plt.get_fignums())")
        self.assertEqual(len(run.pngs), 20)
        self.assertEqual(run.result, {"text/plain": "0"})


class HelperTests(RuntimeTestCase):
    def test_display_prints_other_objects(self):
        run = self.run_cells("import pandas as pd\ndisplay(pd.DataFrame({'col': [7]}), 'text')\ndisplay(3)")
        self.assertEqual(run.stdout, "   col\n0    7\n'text'\n3\n")
        self.assertIsNone(run.result)  # display() returns None
        self.assertEqual(run.pngs, [])

    def test_pil_show_is_a_display(self):
        run = self.run_cells("from PIL import Image\nimg = Image.new('RGB', (8, 6), 'red')\nimg.show()\n"
                             "Image.new('CMYK', (3, 2)).show()\ndisplay(Image.new('RGBA', (2, 2)))")
        self.assertIsNone(run.error)
        self.assertEqual(len(run.pngs), 3)
        self.assert_png(run.pngs[0], size=(8, 6))
        self.assert_png(run.pngs[1], size=(3, 2))
        self.assert_png(run.pngs[2], size=(2, 2))
        self.assertEqual(run.stdout, "")

    def test_pil_image_as_value(self):
        run = self.run_cells("from PIL import Image\nImage.new('L', (5, 4))")
        self.assertEqual(len(run.pngs), 1)
        self.assert_png(run.pngs[0], size=(5, 4))
        self.assertIn("PIL.Image.Image image mode=L size=5x4", run.result["text/plain"])

    def test_ace_tools_display_dataframe_to_user(self):
        run = self.run_cells("import pandas as pd\nimport ace_tools as tools\n"
                             "df = pd.DataFrame({'n': range(10)})\n"
                             "tools.display_dataframe_to_user(name='Numbers', dataframe=df)")
        self.assertIsNone(run.error)
        self.assertTrue(run.stdout.startswith("Numbers\n   n\n0  0\n"), run.stdout)
        self.assertIn("\n9  9\n", run.stdout)  # the whole frame is printed
        self.assertIn("<table", run.result["text/html"])
        self.assertEqual(run.result["text/plain"].splitlines()[-1], "4  4")  # the head is returned

    def test_caas_jupyter_tools_accepts_non_frames(self):
        run = self.run_cells("from caas_jupyter_tools import display_dataframe_to_user\n"
                             "display_dataframe_to_user('Values', [1, 2])")
        self.assertEqual(run.stdout, "Values\n[1, 2]\n")
        self.assertEqual(run.result, {"text/plain": "[1, 2]"})


class ZygoteTests(RuntimeTestCase):
    def test_import_needs_only_the_standard_library(self):
        modules = self.run_script("""
            import json
            print(json.dumps(sorted({"numpy", "pandas", "matplotlib", "PIL"} & set(sys.modules))))
            """)
        self.assertEqual(modules, [])

    def test_works_without_scientific_packages(self):
        blocked = ["numpy", "pandas", "matplotlib", "matplotlib.pyplot", "PIL", "PIL.Image"]
        run = self.run_cells("display(1)\ntry:\n    import matplotlib\nexcept ImportError:\n    print('none')\n'ok'",
                             block=blocked)
        self.assertIsNone(run.error)
        self.assertEqual(run.stdout, "1\nnone\n")
        self.assertEqual(run.result, {"text/plain": "'ok'"})

    def test_preload_and_warmup_never_raise(self):
        loaded, failed = self.run_script("""
            import json
            sys.modules["matplotlib"] = None  # a broken stack must not break the zygote
            loaded, failed = runtime.preload(["json", "numpy", "no_such_module_codeinterp", "matplotlib"])
            runtime.warmup()
            print(json.dumps([loaded, failed]))
            """)
        self.assertEqual(loaded, ["json", "numpy"])
        self.assertEqual(failed, ["no_such_module_codeinterp", "matplotlib"])

    def test_after_fork_reseeds(self):
        values = self.run_script("""
            import json, random
            runtime.preload(["numpy"])
            import numpy
            random.seed(5)
            numpy.random.seed(5)
            expected = [random.random(), numpy.random.random()]
            random.seed(5)
            numpy.random.seed(5)
            runtime.after_fork()
            print(json.dumps([expected, [random.random(), numpy.random.random()]]))
            """)
        expected, after = values
        self.assertNotEqual(expected[0], after[0])
        self.assertNotEqual(expected[1], after[1])

    def test_forked_children_draw_different_numpy_numbers(self):
        values = self.run_script("""
            import json, os
            runtime.preload(["numpy"])
            runtime.warmup()
            import numpy

            def child_draw(reseed):
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:
                    if reseed:
                        runtime.after_fork()
                    os.write(write, repr(numpy.random.random()).encode())
                    os._exit(0)
                os.close(write)
                with os.fdopen(read) as pipe:
                    value = pipe.read()
                os.waitpid(pid, 0)
                return value

            numpy.random.seed(1234)
            print(json.dumps({"reseeded": [child_draw(True), child_draw(True)],
                              "inherited": [child_draw(False), child_draw(False)]}))
            """)
        inherited, reseeded = values["inherited"], values["reseeded"]
        self.assertEqual(inherited[0], inherited[1])  # the failure after_fork exists to prevent
        self.assertNotEqual(reseeded[0], reseeded[1])

    def test_fatal_signal_to_itself_is_a_report_frame(self):
        # As pid 1 the interpreter would survive its own SIGTERM: it reports it on fd 5, as a `signalled` frame
        # (FrameKind.signalled, 41, payload i32), and ends with 128 + the signal.
        report = self.run_script("""
            import json, os, signal
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                os.dup2(write, runtime._REPORT_FD)
                runtime._die_if_fatal(signal.SIGTERM)
                os._exit(1)
            os.close(write)
            with os.fdopen(read, "rb") as pipe:
                data = pipe.read()
            _, status = os.waitpid(pid, 0)
            print(json.dumps({"bytes": list(data), "exit": os.waitstatus_to_exitcode(status)}))
            """)
        self.assertEqual(bytes(report["bytes"]), struct.pack("<IBIi", 9, 41, 0, 15))
        self.assertEqual(report["exit"], 128 + 15)

    def test_zygote_flow_warmup_leaves_no_figure(self):
        outcome = self.run_script("""
            import json, os
            runtime.preload(["numpy", "pandas", "matplotlib.pyplot", "PIL.Image"])
            runtime.warmup()
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                runtime.after_fork()
                runtime.execute("import matplotlib.pyplot as plt\\nplt.plot([1, 2])\\nplt.show()", write)
                os._exit(0)
            os.close(write)
            with os.fdopen(read, "rb") as pipe:
                print(json.dumps(list(pipe.read())))
            os.waitpid(pid, 0)
            """)
        outcome, pngs = _cell_frames(self, bytes(outcome))
        self.assertIsNone(outcome["error"])
        self.assertEqual(len(pngs), 1)
        self.assert_png(pngs[0])


if __name__ == "__main__":
    unittest.main()
