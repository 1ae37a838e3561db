import Foundation
import InterpreterCore
import Testing
@testable import Sandbox

@Suite("Executions produce what a user expects", .serialized)
struct ExecutionTests {
    @Test func pipExplainsHowPackagesAreAddedInsteadOfFailingOnTheNetwork() async throws {
        let r = try await EngineFixture.run("""
            import subprocess, sys
            script = subprocess.run(["pip", "install", "tabulate"], capture_output=True, text=True)
            module = subprocess.run([sys.executable, "-m", "pip", "install", "tabulate"], capture_output=True, text=True)
            try:
                import pip
                imported = "imported"
            except ImportError as error:
                imported = str(error)
            (script.returncode, module.returncode, "operator" in script.stderr, "operator" in module.stderr, "operator" in imported)
            """)
        #expect(r.status == .ok, "\(r.error?.value ?? "") \(r.stderr)")
        #expect(r.result?["text/plain"] == "(1, 1, True, True, True)")
    }

    @Test func zygoteIsSingleThreadedWhenItForks() async throws {
        let hello = try await EngineFixture.engine.start()
        #expect(hello.threads == 1)
        #expect(hello.failedPreloads.isEmpty, "preloads failed: \(hello.failedPreloads)")
        #expect(hello.preloaded.contains("pandas"))
    }

    @Test func printsAndValue() async throws {
        let r = try await EngineFixture.run("print('hello')\nimport numpy as np\nnp.arange(5).sum()")
        #expect(r.status == .ok)
        #expect(r.stdout == "hello\n")
        #expect(r.result?["text/plain"] == "10")
        #expect(r.error == nil)
    }

    @Test func chartExampleIsStoredAsPNG() async throws {
        let code = try String(contentsOf: EngineFixture.packageRoot.appendingPathComponent("examples/chart.py"), encoding: .utf8)
        let r = try await EngineFixture.run(code)
        #expect(r.status == .ok, "\(r.error.map { $0.traceback.joined() } ?? r.stderr)")
        let chart = try #require(r.files.first { $0.name == "chart.png" })
        #expect(chart.path == "/mnt/data/chart.png")
        #expect(chart.mimeType == "image/png")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: try #require(chart.storePath)))
        #expect(Int64(bytes.count) == chart.sizeBytes)
        #expect(bytes.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        #expect(bytes.count > 5000)
        let stored = try #require(try EngineFixture.engine.store.file(id: chart.id))
        #expect(stored.sha256 == chart.sha256)
        #expect(r.files.contains { $0.name == "sales.csv" && $0.mimeType == "text/csv" })
        #expect(r.result?["text/html"]?.contains("<table") == true)
    }

    @Test func showCapturesFigureAsDisplay() async throws {
        let r = try await EngineFixture.run("import matplotlib.pyplot as plt\nplt.plot([1,3,2])\nplt.show()")
        #expect(r.status == .ok)
        let display = try #require(r.displays.first)
        #expect(display.mimeType == "image/png")
        let file = try #require(try EngineFixture.engine.store.file(id: display.fileId))
        let bytes = try Data(contentsOf: URL(fileURLWithPath: EngineFixture.engine.store.blobPath(for: file)))
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]))
    }

    @Test func dataFrameValueHasHTML() async throws {
        let r = try await EngineFixture.run("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
        #expect(r.status == .ok)
        #expect(r.result?["text/html"]?.contains("<table") == true)
        #expect(r.result?["text/plain"]?.contains("a  b") == true)
    }

    @Test func exceptionComesBackWithTraceback() async throws {
        let r = try await EngineFixture.run("def f(x):\n    return 1 / x\n\nf(0)")
        #expect(r.status == .error)
        let e = try #require(r.error)
        #expect(e.name == "ZeroDivisionError")
        #expect(e.value == "division by zero")
        #expect(e.traceback.joined().contains("return 1 / x"))
    }

    @Test func runsAreIndependent() async throws {
        let a = try await EngineFixture.run("import numpy as np\nsecret = 42\nopen('mine.txt', 'w').write('a')\nnp.random.rand()")
        let b = try await EngineFixture.run("import os, numpy as np\nprint('secret' in globals(), os.listdir('.'))\nnp.random.rand()")
        #expect(a.status == .ok && b.status == .ok)
        #expect(b.stdout == "False []\n")
        #expect(a.result?["text/plain"] != b.result?["text/plain"])
    }

    @Test func everyScientificLibraryWorksUnderTheDefaultProfile() async throws {
        let r = try await EngineFixture.run("""
            import numpy as np, pandas as pd, scipy.optimize, scipy.stats, sympy, PIL.Image, openpyxl
            import matplotlib.pyplot as plt, seaborn as sns
            from sklearn.linear_model import LinearRegression
            from sklearn.cluster import KMeans
            from reportlab.pdfgen import canvas
            out = {}
            out['numpy'] = float(np.linalg.inv(np.array([[2.0, 0], [0, 4]]))[1, 1])
            df = pd.DataFrame({'g': ['a', 'b', 'a'], 'v': [1, 2, 3]})
            out['pandas'] = int(df.groupby('g').v.sum()['a'])
            df.to_excel('t.xlsx', index=False); out['openpyxl'] = openpyxl.load_workbook('t.xlsx').active['B2'].value
            out['scipy'] = round(float(scipy.optimize.minimize_scalar(lambda x: (x - 3) ** 2).x), 3)
            out['stats'] = round(float(scipy.stats.norm.cdf(0)), 2)
            x = sympy.symbols('x'); out['sympy'] = [int(s) for s in sympy.solve(x**2 - 4, x)]
            X = np.arange(10).reshape(-1, 1); out['sklearn'] = round(float(LinearRegression().fit(X, 2 * X.ravel()).coef_[0]), 3)
            out['kmeans'] = len(set(KMeans(n_clusters=2, n_init=2, random_state=0).fit_predict(np.r_[np.zeros((5, 2)), np.ones((5, 2)) * 9])))
            sns.histplot(np.random.rand(50)); plt.savefig('s.png'); plt.close('all')
            c = canvas.Canvas('r.pdf'); c.drawString(72, 720, 'hi'); c.save()
            im = PIL.Image.new('RGB', (40, 20), 'red').resize((20, 10)); im.save('p.png'); out['pil'] = im.size
            out
            """, timeout: 60)
        #expect(r.status == .ok, "\(r.error.map { $0.traceback.joined() } ?? "") \(r.stderr)")
        let value = r.result?["text/plain"] ?? ""
        for expected in ["'numpy': 0.25", "'pandas': 4", "'openpyxl': 1", "'scipy': 3.0", "'stats': 0.5", "'sympy': [-2, 2]",
                         "'sklearn': 2.0", "'kmeans': 2", "'pil': (20, 10)"] {
            #expect(value.contains(expected), "missing \(expected) in \(value)")
        }
        for name in ["t.xlsx", "s.png", "r.pdf", "p.png"] { #expect(r.files.contains { $0.name == name }) }
    }
}
