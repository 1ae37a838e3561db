"""The Debian package as an operator gets it: built by scripts/package (scripts/test builds it from the debug
build and passes its path in CODEINTERP_DEB), its files extracted into a temporary root, and run from there with
nothing of the checkout around: the binary must find its worker and its profiles where the package put them.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

DEB = os.environ.get("CODEINTERP_DEB")


@unittest.skipUnless(DEB, "CODEINTERP_DEB is not set (scripts/test builds the package)")
class DebianPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="codeinterp-deb-")
        subprocess.run(["dpkg-deb", "-x", DEB, cls.root], check=True)
        cls.binary = os.path.join(cls.root, "usr/bin/codeinterp")
        cls.data = tempfile.mkdtemp(prefix="codeinterp-deb-data-")
        # Nothing of the checkout or the test environment: the installed layout alone.
        cls.env = {"PATH": "/usr/bin:/bin", "HOME": cls.data, "LANG": "C.UTF-8", "CODEINTERP_PRELOAD": "numpy"}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        shutil.rmtree(cls.data, ignore_errors=True)

    def codeinterp(self, *args):
        return subprocess.run([self.binary, *args, "--data-dir", self.data], env=self.env, capture_output=True,
                              text=True, timeout=600)

    def test_the_package_has_its_parts_and_its_dependencies(self):
        for path in ["usr/bin/codeinterp", "usr/bin/codeinterp-worker", "usr/share/codeinterp/sandbox-profiles/default.json",
                     "lib/systemd/system/codeinterp.service"]:
            self.assertTrue(os.path.exists(os.path.join(self.root, path)), path)
        depends = subprocess.run(["dpkg-deb", "-f", DEB, "Depends"], capture_output=True, text=True, check=True).stdout
        for package in ["libseccomp2", "libpython3", "python3-numpy", "python3-matplotlib", "python3-pandas"]:
            self.assertIn(package, depends)
        version = subprocess.run([self.binary, "--version"], capture_output=True, text=True, env=self.env)
        self.assertEqual(version.returncode, 0, version.stderr)

    def test_doctor_and_an_execution_run_from_the_extracted_tree(self):
        doctor = self.codeinterp("doctor")
        self.assertEqual(doctor.returncode, 0, doctor.stdout + doctor.stderr)
        self.assertIn("usr/share/codeinterp/sandbox-profiles", doctor.stdout + doctor.stderr)
        run = self.codeinterp("run", "--json", "--standalone", "-c", "import numpy\nprint(int(numpy.arange(7).sum()))")
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertEqual(json.loads(run.stdout)["stdout"], "21\n")

    def test_the_systemd_unit_verifies(self):
        with open(os.path.join(self.root, "lib/systemd/system/codeinterp.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/bin/codeinterp serve", unit)
        self.assertIn("Delegate=yes", unit)
        # Verified against the extracted binary (systemd checks that ExecStart's program exists); a warning of
        # any kind (an unknown key, a bad value) fails the test.
        units = tempfile.mkdtemp(prefix="codeinterp-unit-")
        try:
            path = os.path.join(units, "codeinterp.service")
            with open(path, "w") as f:
                f.write(unit.replace("/usr/bin/codeinterp", self.binary))
            verify = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True, text=True)
            self.assertEqual(verify.returncode, 0, verify.stderr)
            self.assertEqual(verify.stderr.strip(), "")
        finally:
            shutil.rmtree(units, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
