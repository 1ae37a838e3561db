"""The page at `/` in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`) driven by
`selenium`, against `codeinterp serve` with the bundled demo model. What a person does and sees: signing in with
the printed link, a chat whose code runs and draws, an upload the model's code reads, notebook cells that share
state, a timeout, a stop, a reload, a narrow window, and HTML from an execution that must not run in the page.

A screenshot of each state is saved under outputs/browser/ (look at them after a change to the page).
Needs CODEINTERP_URL and CODEINTERP_API_KEY (scripts/test starts the server).
"""
import json
import os
import shutil
import tempfile
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["CODEINTERP_URL"].rstrip("/")
KEY = os.environ["CODEINTERP_API_KEY"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(ROOT, "outputs", "browser")
# Generous: the machine may be busy; every wait ends as soon as what it waits for is there.
WAIT = 90

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def fetch(path_or_url, key=None):
    """(status, bytes) of a GET, with the API key only when given."""
    url = path_or_url if path_or_url.startswith("http") else URL + path_or_url
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def timeouts():
    """Executions the server ended at their time limit so far."""
    _, text = fetch("/metrics", key=KEY)
    for line in text.decode().splitlines():
        if line.startswith('codeinterp_executions_total{status="timeout"}'):
            return int(line.split()[-1])
    return 0


def in_flight():
    return json.loads(fetch("/healthz")[1])["executions_in_flight"]


class Page(unittest.TestCase):
    """One browser for the class (a fresh profile); each test starts from a signed-in page of its own."""

    @classmethod
    def setUpClass(cls):
        os.makedirs(SHOTS, exist_ok=True)
        cls.profile = tempfile.mkdtemp(prefix="codeinterp-browser-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-default-apps", "--window-size=1280,900", f"--user-data-dir={cls.profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        cls.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        cls.driver.set_script_timeout(WAIT)

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        shutil.rmtree(cls.profile, ignore_errors=True)

    def setUp(self):
        self.driver.set_window_size(1280, 900)
        self.sign_in()
        self.driver.get_log("browser")  # what earlier tests logged is theirs

    # MARK: helpers

    def sign_in(self):
        self.load(f"/?token={KEY}")
        self.wait_for(By.ID, "tabs", visible=True)

    def load(self, path):
        """A fresh load of the page (not a move within it, as a change of the #fragment alone would be)."""
        self.driver.get("about:blank")
        self.driver.get(URL + path)

    def wait(self, condition, timeout=WAIT, message=""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(condition, message)

    def wait_for(self, by, value, visible=False, root=None):
        def found(_):
            elements = (root or self.driver).find_elements(by, value)
            elements = [e for e in elements if e.is_displayed()] if visible else elements
            return elements[0] if elements else False
        return self.wait(found, message=f"no {'visible ' if visible else ''}{value}")

    def wait_text(self, by, value, text, root=None):
        def found(_):
            for element in (root or self.driver).find_elements(by, value):
                if text in element.text:
                    return element
            return False
        return self.wait(found, message=f"no {value} showing {text!r}")

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def page_errors(self):
        """Console messages about the page's policy (CSP, Trusted Types) or uncaught errors."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE" and "favicon" not in entry["message"]]

    def open_view(self, name):
        self.driver.find_element(By.ID, f"tab-{name}").click()
        self.wait_for(By.ID, f"{name}-view", visible=True)

    def new_chat(self):
        self.open_view("chat")
        self.driver.find_element(By.ID, "new-chat").click()
        self.wait_for(By.CSS_SELECTOR, "#transcript .intro", visible=True)

    def send(self, text):
        box = self.driver.find_element(By.ID, "message")
        box.send_keys(text)
        box.send_keys(Keys.ENTER)

    def wait_answer_done(self):
        """The response has ended: the Send button is back."""
        self.wait(lambda d: d.find_element(By.ID, "send").is_displayed() and not d.find_element(By.ID, "stop").is_displayed(),
                  message="the answer did not finish")

    def image_loaded(self, image):
        return self.js("return arguments[0].complete && arguments[0].naturalWidth", image)

    def notebook(self):
        """The notebook with one empty cell and no session yet (what earlier tests left is forgotten)."""
        self.js("localStorage.removeItem('codeinterp.notebook.cells'); localStorage.removeItem('codeinterp.notebook.session')")
        self.load("/#notebook")
        self.wait_for(By.CSS_SELECTOR, "#cells .cell textarea", visible=True)
        return self.cells()

    def cells(self):
        return self.driver.find_elements(By.CSS_SELECTOR, "#cells .cell")

    def run_cell(self, index, code):
        """Types `code` into cell `index` and runs it with Shift+Enter (which focuses the next cell)."""
        box = self.cells()[index].find_element(By.TAG_NAME, "textarea")
        box.clear()
        box.send_keys(code)
        box.send_keys(Keys.SHIFT, Keys.ENTER)
        return self.cells()[index]

    def wait_cell_done(self, cell):
        self.wait(lambda _: cell.get_attribute("data-state") == "idle", message="the cell did not finish")
        return cell

    # MARK: signing in

    def test_the_printed_link_signs_in_and_leaves_no_key_in_the_address(self):
        self.assertNotIn("token", self.driver.current_url)
        self.assertNotIn(KEY, self.driver.current_url)
        self.assertEqual(self.js("return localStorage.getItem('codeinterp.apiKey')"), KEY)
        self.assertNotIn(KEY, self.js("return JSON.stringify(history.state) + document.referrer"))
        self.shot("01-signed-in")

    def test_without_a_key_the_page_asks_for_one_and_a_wrong_one_is_refused(self):
        self.driver.find_element(By.ID, "sign-out").click()
        self.load("/")
        field = self.wait_for(By.ID, "sign-in-key", visible=True)
        self.assertFalse(self.driver.find_element(By.ID, "chat-view").is_displayed())
        self.shot("02-sign-in")
        field.send_keys("not-the-key", Keys.ENTER)
        self.wait_text(By.ID, "sign-in-error", "refused")
        self.assertEqual(field.get_attribute("value"), "not-the-key", "the typed key stays, to correct it")
        self.assertIsNone(self.js("return localStorage.getItem('codeinterp.apiKey')"))
        self.shot("03-sign-in-refused")
        field.clear()
        field.send_keys(KEY, Keys.ENTER)
        self.wait_for(By.ID, "tabs", visible=True)
        self.assertEqual(self.js("return localStorage.getItem('codeinterp.apiKey')"), KEY)

    def test_a_refused_request_keeps_the_typed_message(self):
        self.new_chat()
        self.js("localStorage.setItem('codeinterp.apiKey', 'revoked-key')")
        self.send("this text must survive")
        self.wait_for(By.ID, "sign-in-key", visible=True)
        self.wait_text(By.ID, "sign-in-error", "refused")
        self.driver.find_element(By.ID, "sign-in-key").send_keys(KEY, Keys.ENTER)
        self.wait_for(By.ID, "chat-view", visible=True)
        self.assertEqual(self.driver.find_element(By.ID, "message").get_attribute("value"), "this text must survive")
        self.assertEqual(self.driver.find_elements(By.CSS_SELECTOR, "#transcript .turn.user"), [],
                         "the message that was not sent is not shown as sent")

    def test_when_the_server_cannot_be_reached_the_page_says_so_and_keeps_the_typed_text(self):
        self.new_chat()
        self.driver.set_network_conditions(offline=True, latency=0, download_throughput=-1, upload_throughput=-1)
        try:
            self.send("typed while offline")
            error = self.wait_text(By.ID, "chat-error", "Cannot reach the codeinterp server")
            self.assertTrue(error.is_displayed())
            self.assertEqual(self.driver.find_element(By.ID, "message").get_attribute("value"), "typed while offline")
            self.shot("14-chat-unreachable")
        finally:
            self.driver.delete_network_conditions()
        # Back online, the same text goes out as it was.
        self.driver.find_element(By.ID, "message").send_keys(Keys.ENTER)
        self.wait_text(By.CSS_SELECTOR, "#transcript .turn.user", "typed while offline")
        self.wait_answer_done()
        self.assertEqual(self.driver.find_element(By.ID, "message").get_attribute("value"), "")
        self.assertFalse(self.driver.find_element(By.ID, "chat-error").is_displayed())

    # MARK: chat

    def test_chat_streams_code_and_its_outputs_and_the_conversation_comes_back_after_a_reload(self):
        self.new_chat()
        self.send("Chart the quarterly sales per region (browser test)")
        answer = self.wait_text(By.CSS_SELECTOR, "#transcript .answer", "North sold the most")
        self.wait_answer_done()
        runs = self.driver.find_elements(By.CSS_SELECTOR, "#transcript .code-run")
        self.assertEqual(len(runs), 2)
        self.assertIn("pd.read_csv", runs[0].find_element(By.CSS_SELECTOR, "pre.code").text)
        self.assertIn("12 rows, total sales 1340", runs[0].find_element(By.CSS_SELECTOR, ".stream.stdout").text)
        # The summary DataFrame is HTML: it is shown in a sandboxed frame, never in the page itself.
        frame = runs[0].find_element(By.CSS_SELECTOR, "iframe.html-output")
        self.assertNotIn("allow-scripts", frame.get_attribute("sandbox"))
        self.driver.switch_to.frame(frame)
        self.assertIn("North", self.driver.find_element(By.TAG_NAME, "table").text)
        self.driver.switch_to.default_content()
        self.assertEqual(self.driver.find_elements(By.CSS_SELECTOR, "#transcript table.dataframe"), [])
        # The chart drawn by the second run has loaded.
        chart = self.wait_for(By.CSS_SELECTOR, ".figure img", root=runs[1])
        self.wait(lambda _: self.image_loaded(chart), message="the chart did not load")
        # sandbox:/mnt/data links became download links that give the files' bytes.
        links = {a.text: a for a in answer.find_elements(By.TAG_NAME, "a")}
        self.assertEqual(set(links), {"chart.png", "sales.csv"})
        status, csv = fetch(links["sales.csv"].get_attribute("href"))
        self.assertEqual(status, 200)
        self.assertTrue(csv.startswith(b"region,quarter,sales\nNorth,Q1,120\n"), csv[:60])
        self.assertEqual(links["sales.csv"].get_attribute("download"), "sales.csv")
        status, png = fetch(links["chart.png"].get_attribute("href"))
        self.assertEqual((status, png[:8]), (200, b"\x89PNG\r\n\x1a\n"))
        written = [a.text for a in runs[1].find_elements(By.CSS_SELECTOR, ".files-written a")]
        self.assertIn("chart.png", written)
        self.assertEqual(self.page_errors(), [])
        self.shot("04-chat-answer")

        # Reloaded, the conversation is listed (it lives in the server's database) and opens again.
        self.load("/")
        entry = self.wait_text(By.CSS_SELECTOR, "#conversation-list li", "browser test")
        entry.find_element(By.TAG_NAME, "a").click()
        self.wait_text(By.CSS_SELECTOR, "#transcript .answer", "North sold the most")
        self.wait_text(By.CSS_SELECTOR, "#transcript .turn.user", "Chart the quarterly sales")
        chart = self.wait_for(By.CSS_SELECTOR, "#transcript .code-run .figure img")
        self.wait(lambda _: self.image_loaded(chart), message="the reopened chart did not load")
        self.assertIn("#chat/conv_", self.driver.current_url)
        self.shot("05-chat-reopened")

    def test_an_uploaded_csv_is_read_by_the_models_code(self):
        self.new_chat()
        path = os.path.join(tempfile.mkdtemp(), "measurements.csv")
        with open(path, "w") as f:
            f.write("station,temperature,humidity\nzebra-17,21.5,40\nokapi-3,19.0,55\nlynx-8,23.25,38\n")
        self.driver.find_element(By.ID, "attach-input").send_keys(path)
        self.wait_text(By.CSS_SELECTOR, "#attachments .chip", "measurements.csv")
        self.shot("06-chat-attachment")
        self.send("What is in this file?")
        self.wait_text(By.CSS_SELECTOR, "#transcript .turn.user .chip", "measurements.csv")
        run = self.wait_text(By.CSS_SELECTOR, "#transcript .code-run", "3 rows, 3 columns")
        self.assertIn('/mnt/data/measurements.csv', run.find_element(By.CSS_SELECTOR, "pre.code").text)
        self.assertIn("station, temperature, humidity", run.text)
        self.driver.switch_to.frame(run.find_element(By.CSS_SELECTOR, "iframe.html-output"))
        self.assertIn("zebra-17", self.driver.find_element(By.TAG_NAME, "table").text)
        self.driver.switch_to.default_content()
        self.wait_answer_done()
        chart = self.wait_for(By.CSS_SELECTOR, "#transcript .code-run .figure img")
        self.wait(lambda _: self.image_loaded(chart), message="the chart of the upload did not load")
        self.assertEqual(self.driver.find_elements(By.CSS_SELECTOR, "#attachments .chip"), [], "sent attachments leave the box")
        self.shot("07-chat-upload-read")

    # MARK: notebook

    def test_notebook_cells_share_state_and_list_the_files_they_write(self):
        self.notebook()
        first = self.run_cell(0, "x = 21\nopen('answer.txt', 'w').write(str(x * 2))")
        self.wait_cell_done(first)
        second = self.wait_cell_done(self.run_cell(1, "print('x doubled is', x * 2)\nx"))
        self.assertIn("x doubled is 42", second.find_element(By.CSS_SELECTOR, ".stream.stdout").text)
        self.assertEqual(second.find_element(By.CSS_SELECTOR, "pre.value").text, "21")
        self.assertEqual(second.find_element(By.CSS_SELECTOR, ".prompt").text, "[2]")
        link = self.wait_text(By.CSS_SELECTOR, "#session-files a", "answer.txt")
        self.assertEqual(fetch(link.get_attribute("href")), (200, b"42"))
        self.shot("08-notebook-shared-state")

        # A restart: a fresh interpreter (x is gone), the same files.
        self.driver.find_element(By.ID, "restart").click()
        self.wait_text(By.ID, "session-status", "restarted")
        third = self.wait_cell_done(self.run_cell(2, "print(open('answer.txt').read())\nx"))
        self.assertIn("42", third.find_element(By.CSS_SELECTOR, ".stream.stdout").text)
        self.assertIn("NameError", third.find_element(By.CSS_SELECTOR, ".traceback").text)

    def test_output_shows_while_a_cell_runs_and_stop_ends_it(self):
        self.notebook()
        running = self.run_cell(0, "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.1)")
        # The first line is on the page while the cell still runs.
        self.wait(lambda _: "started" in running.text and running.get_attribute("data-state") == "running",
                  message="no live output while the cell ran")
        self.assertRegex(running.find_element(By.CSS_SELECTOR, ".cell-state").text, r"Running… \d")
        self.shot("09-notebook-live-output")
        before = timeouts()
        running.find_element(By.CSS_SELECTOR, "button.stop").click()
        self.wait_text(By.CSS_SELECTOR, "#cells .note.limit", "you stopped the cell")
        # The server stopped the code: nothing runs any more, and not because the time limit ended it.
        self.wait(lambda _: in_flight() == 0, message="the stopped cell still runs on the server")
        self.assertEqual(timeouts(), before)
        after = self.wait_cell_done(self.run_cell(1, "print('next cell runs')"))
        self.assertIn("next cell runs", after.find_element(By.CSS_SELECTOR, ".stream.stdout").text)

    def test_a_session_that_expired_is_replaced_and_the_cell_still_runs(self):
        self.notebook()
        self.wait_cell_done(self.run_cell(0, "y = 1"))
        session = self.js("return localStorage.getItem('codeinterp.notebook.session')")
        request = urllib.request.Request(f"{URL}/v1/sessions/{session}", method="DELETE")
        request.add_header("Authorization", f"Bearer {KEY}")
        urllib.request.urlopen(request, timeout=60).read()
        cell = self.wait_cell_done(self.run_cell(1, "print('in a new session')"))
        self.assertIn("in a new session", cell.find_element(By.CSS_SELECTOR, ".stream.stdout").text)
        self.wait_text(By.ID, "session-status", "had expired")
        self.assertNotEqual(self.js("return localStorage.getItem('codeinterp.notebook.session')"), session)

    def test_a_cell_that_times_out_says_so_and_the_next_cell_works(self):
        self.notebook()
        limit = self.driver.find_element(By.ID, "time-limit")
        limit.clear()
        limit.send_keys("2")
        slow = self.wait_cell_done(self.run_cell(0, "while True:\n    pass"))
        note = slow.find_element(By.CSS_SELECTOR, ".note.limit")
        self.assertIn("Timed out", note.text)
        self.assertEqual(slow.get_attribute("data-status"), "timeout")
        self.shot("10-notebook-timeout")
        limit.clear()
        after = self.wait_cell_done(self.run_cell(1, "print('after the timeout')"))
        self.assertIn("after the timeout", after.find_element(By.CSS_SELECTOR, ".stream.stdout").text)
        self.assertEqual(after.get_attribute("data-status"), "ok")

    def test_html_from_an_execution_runs_no_script_in_the_page(self):
        self.notebook()
        title = self.driver.title
        code = ("class Hostile:\n"
                "    def _repr_html_(self):\n"
                "        return ('<p id=\"framed\">framed <b>html</b></p>'\n"
                "                '<script>window.top.hostile = 1; window.top.document.title = \"pwned\";</script>'\n"
                "                '<img src=\"data:,x\" onerror=\"window.top.hostile = 2\">')\n"
                "Hostile()")
        cell = self.wait_cell_done(self.run_cell(0, code))
        frame = cell.find_element(By.CSS_SELECTOR, "iframe.html-output")
        self.assertNotIn("allow-scripts", frame.get_attribute("sandbox"))
        self.driver.switch_to.frame(frame)
        self.assertEqual(self.driver.find_element(By.ID, "framed").text, "framed html", "the HTML is shown")
        self.assertIsNone(self.js("return window.hostile ?? null"))
        self.driver.switch_to.default_content()
        self.assertIsNone(self.js("return window.hostile ?? null"), "a script of the HTML ran in the page")
        self.assertEqual(self.driver.title, title)
        self.assertEqual(self.driver.find_elements(By.ID, "framed"), [], "the HTML is not in the page's own DOM")
        self.shot("11-notebook-html-value")

    def test_markdown_is_rendered_and_html_in_it_stays_text(self):
        fragment = self.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            import('/web/markdown.js').then(({ renderMarkdown }) => {
              const box = document.createElement('div');
              box.append(renderMarkdown([
                '# Title', '', 'Some **bold**, *em*, `code` and snake_case_name.', '',
                '- one', '- two', '  - nested', '', '1. first', '2. second', '',
                '| a | b |', '|---|--:|', '| 1 | 2 |', '',
                '```python', 'print("<b>")', '```', '',
                '<img src=x onerror="window.hostile=1"> <script>window.hostile=2</script>',
                '[bad](javascript:window.hostile=3) [good](https://example.com/x) [file](sandbox:/mnt/data/a.csv)',
              ].join('\\n')));
              done({
                html: box.innerHTML, text: box.textContent,
                tags: [...box.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),
                hrefs: [...box.querySelectorAll('a')].map((a) => a.getAttribute('href')),
              });
            });""")
        tags = fragment["tags"]
        for tag in ("h1", "strong", "em", "code", "ul", "ol", "li", "table", "th", "td", "pre"):
            self.assertIn(tag, tags)
        self.assertNotIn("img", tags)
        self.assertNotIn("script", tags)
        self.assertIn('<img src=x onerror="window.hostile=1">', fragment["text"])
        self.assertIn("snake_case_name", fragment["text"])
        self.assertEqual(fragment["hrefs"], ["https://example.com/x"], "only the http link is a link")
        self.assertIsNone(self.js("return window.hostile ?? null"))

    # MARK: layout

    def test_a_narrow_window_has_no_sideways_scrolling(self):
        self.driver.set_window_size(390, 844)
        self.open_view("chat")
        self.wait_for(By.ID, "message", visible=True)
        self.shot("12-narrow-chat")
        overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        self.assertLessEqual(self.js(overflow), 0)
        send = self.driver.find_element(By.ID, "send")
        self.assertLessEqual(send.rect["x"] + send.rect["width"], self.js("return document.documentElement.clientWidth"))
        self.notebook()
        self.wait_cell_done(self.run_cell(0, "print('narrow')\n[list(range(40))] * 3"))
        self.shot("13-narrow-notebook")
        self.assertLessEqual(self.js(overflow), 0)


if __name__ == "__main__":
    unittest.main()
