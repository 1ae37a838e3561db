"""What the soak sends: benign snippets of the kind models write (each with a check of its result), hostile ones
(each with what containment looks like), and the cells of a session conversation."""


def value(result):
    return ((result or {}).get("result") or {}).get("text/plain")


def names(result):
    return sorted(f["name"] for f in result["files"])


def is_png(result, name):
    return any(f["name"] == name and f["mime_type"] == "image/png" and f["size_bytes"] > 1000 for f in result["files"])


BENIGN = [
    {"name": "numpy", "code": "import numpy as np\nm = np.array([[2.0, 0], [0, 4]])\nfloat(np.linalg.inv(m)[1, 1])",
     "check": lambda r: value(r) == "0.25"},
    {"name": "numpy-random-stats", "code": "import numpy as np\nx = np.random.default_rng(7).normal(size=100_000)\nround(float(x.mean()), 1), round(float(x.std()), 1)",
     "check": lambda r: value(r) in ("(0.0, 1.0)", "(-0.0, 1.0)")},
    {"name": "pandas-groupby", "code": "import pandas as pd\ndf = pd.DataFrame({'g': list('abab'), 'v': [1, 2, 3, 4]})\ndf.groupby('g').v.sum()",
     "check": lambda r: "a    4" in (value(r) or "")},
    {"name": "pandas-html", "code": "import pandas as pd\npd.DataFrame({'region': ['n', 's'], 'sales': [10, 32]}).describe()",
     "check": lambda r: "<table" in ((r.get("result") or {}).get("text/html") or "")},
    {"name": "matplotlib-savefig", "code": "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar(['q1', 'q2', 'q3'], [3, 5, 2])\nax.set_title('sales')\nfig.savefig('chart.png')\n'saved'",
     "check": lambda r: value(r) == "'saved'" and is_png(r, "chart.png")},
    {"name": "matplotlib-show", "code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()",
     "check": lambda r: len(r["displays"]) == 1 and r["displays"][0]["mime_type"] == "image/png"},
    {"name": "scipy", "code": "import scipy.optimize, scipy.stats\n(round(float(scipy.optimize.minimize_scalar(lambda x: (x - 3) ** 2).x), 3), round(float(scipy.stats.norm.cdf(0)), 2))",
     "check": lambda r: value(r) == "(3.0, 0.5)"},
    {"name": "sklearn", "code": "import numpy as np\nfrom sklearn.linear_model import LinearRegression\nX = np.arange(20).reshape(-1, 1)\nround(float(LinearRegression().fit(X, 2 * X.ravel() + 1).coef_[0]), 3)",
     "check": lambda r: value(r) == "2.0"},
    {"name": "sklearn-kmeans", "code": "import numpy as np\nfrom sklearn.cluster import KMeans\nX = np.r_[np.zeros((10, 2)), np.ones((10, 2)) * 9]\nlen(set(KMeans(n_clusters=2, n_init=2, random_state=0).fit_predict(X)))",
     "check": lambda r: value(r) == "2"},
    {"name": "seaborn", "code": "import numpy as np, seaborn as sns, matplotlib.pyplot as plt\nsns.histplot(np.random.default_rng(1).normal(size=500))\nplt.savefig('hist.png')\nplt.close('all')\n'ok'",
     "check": lambda r: is_png(r, "hist.png")},
    {"name": "openpyxl", "code": "import pandas as pd, openpyxl\npd.DataFrame({'a': [1, 2], 'b': [3, 4]}).to_excel('t.xlsx', index=False)\nopenpyxl.load_workbook('t.xlsx').active['B3'].value",
     "check": lambda r: value(r) == "4" and names(r) == ["t.xlsx"]},
    {"name": "reportlab", "code": "from reportlab.pdfgen import canvas\nc = canvas.Canvas('report.pdf')\nc.drawString(72, 720, 'Quarterly report')\nc.save()\nopen('report.pdf', 'rb').read(5)",
     "check": lambda r: value(r) == "b'%PDF-'" and names(r) == ["report.pdf"]},
    {"name": "sympy", "code": "import sympy\nx = sympy.symbols('x')\nsorted(int(s) for s in sympy.solve(x**2 - 4, x))",
     "check": lambda r: value(r) == "[-2, 2]"},
    {"name": "pil", "code": "from PIL import Image, ImageDraw\nim = Image.new('RGB', (64, 32), 'white')\nImageDraw.Draw(im).rectangle([4, 4, 30, 20], fill='red')\nim.resize((32, 16)).save('thumb.png')\nim.size",
     "check": lambda r: value(r) == "(64, 32)" and names(r) == ["thumb.png"]},
]


SESSION_CELLS = [
    {"name": "load", "code": "import pandas as pd\ndf = pd.read_csv('sales.csv')\nlen(df)",
     "check": lambda r, total: value(r) == "100"},
    {"name": "state", "code": "by_region = df.groupby('region').units.sum()\nint(by_region.sum())",
     "check": lambda r, total: value(r) == str(total)},
    {"name": "outputs", "code": "import matplotlib.pyplot as plt\nby_region.plot.bar()\nplt.savefig('by_region.png')\nby_region.to_csv('by_region.csv')\nsorted(by_region.index)",
     "check": lambda r, total: value(r) == "['east', 'north', 'south', 'west']" and {"by_region.png", "by_region.csv"} <= set(names(r))},
]


def status(expected):
    return lambda r: r["status"] == expected


HOSTILE = [
    {"name": "fork-bomb", "code": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
     "extra": {"timeout_s": 2}, "contained": status("timeout")},
    {"name": "memory-bomb", "code": "x = bytearray(8 * 1024**3)", "contained": status("memory_limit")},
    {"name": "output-flood", "code": "while True:\n    print('y' * 1000)", "contained": status("output_limit")},
    {"name": "cpu-spin", "code": "while True:\n    pass", "extra": {"timeout_s": 1}, "contained": status("timeout")},
    {"name": "ptrace", "code": "import ctypes\nctypes.CDLL(None).ptrace(0, 0, 0, 0)",
     "contained": lambda r: r["status"] == "blocked_syscall" and r.get("blocked_syscall") == "ptrace"},
    {"name": "network", "code": "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 8080), timeout=1)\n    r = 'connected'\nexcept OSError as e:\n    r = type(e).__name__\nr",
     "contained": lambda r: r["status"] == "ok" and value(r) == "'PermissionError'"},
    {"name": "shadow", "code": "open('/etc/shadow').read()", "contained": lambda r: r["status"] == "ok" and value(r) == "''"},
    {"name": "kill-everyone", "code": "import os\ntry:\n    os.kill(-1, 9)\n    r = 'sent'\nexcept ProcessLookupError:\n    r = 'nobody'\nr",
     "contained": lambda r: r["status"] == "ok" and value(r) == "'nobody'"},
    {"name": "leftover-children", "code": "import os, subprocess\nsubprocess.Popen(['sleep', '9999'], start_new_session=True)\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '9998'])\n'left'",
     # Its containment is the leak scan's: no process it started may outlive it. (It may also end `error` when a
     # fork is refused: once in a 10,000-execution soak, EAGAIN right after a fork bomb.)
     "contained": lambda r: r["status"] in ("ok", "error")},
    {"name": "unshare", "code": "import ctypes\nctypes.CDLL(None).unshare(0x10000000)",
     "contained": lambda r: r["status"] == "blocked_syscall" and r.get("blocked_syscall") == "unshare"},
    {"name": "tmp-persistence", "code": "for p in ('/tmp/left', '/dev/shm/left', '/var/tmp/left2', '/mnt/data/left'):\n    open(p, 'w').write('x')\n'written'",
     "contained": lambda r: r["status"] == "ok",
     "then": {"code": "import os\n[os.path.exists(p) for p in ('/tmp/left', '/dev/shm/left', '/var/tmp/left2', '/mnt/data/left')]",
              "expect": "[False, False, False, False]"}},
    {"name": "sysv-persistence", "code": "import ctypes\nctypes.CDLL(None).shmget(0x50a4, 4096, 0o1000 | 0o666) >= 0",
     "contained": lambda r: r["status"] == "ok" and value(r) == "True",
     "then": {"code": "import ctypes\nctypes.CDLL(None).shmget(0x50a4, 0, 0)", "expect": "-1"}},
    {"name": "symlink-collector", "code": "import os\nos.symlink('/etc/passwd', 'passwd')\nopen('real.txt', 'w').write('x')\n'linked'",
     "contained": lambda r: r["status"] == "ok" and names(r) == ["real.txt"]},
    {"name": "file-flood", "code": "for i in range(3000):\n    open(f'f{i}', 'w').close()\n'made'",
     "contained": lambda r: r["status"] == "ok" and len(r["files"]) == 100 and len(r["stderr"]) < 4096},
    {"name": "huge-value", "code": "'x' * (32 << 20)", "contained": lambda r: r["status"] == "ok" and len(value(r) or "") < 70_000},
]
