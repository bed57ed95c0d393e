from portal import vendor


class TestVendoredAssets:
    def test_every_vendored_file_is_listed_unchanged_and_licensed(self):
        assert vendor.check() == []

    def test_a_changed_file_is_caught(self, tmp_path, monkeypatch):
        copy = tmp_path / "vendor"
        import shutil

        shutil.copytree(vendor.VENDOR, copy)
        (copy / "htmx" / "htmx.min.js").write_text("tampered")
        (copy / "stray.js").write_text("x")
        monkeypatch.setattr(vendor, "VENDOR", copy)
        monkeypatch.setattr(vendor, "MANIFEST", copy / "manifest.json")
        problems = vendor.check()
        assert any("htmx.min.js" in p and "sha256" in p for p in problems)
        assert any("stray.js is not in the manifest" in p for p in problems)
