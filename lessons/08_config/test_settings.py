import os

import pytest

import settings


@pytest.fixture
def app():
    return settings.create_app({"TESTING": True, "SECRET_KEY": "test-secret-value"})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def clean_environment(monkeypatch):
    """No FLASK_* variables, no APP_SETTINGS and no .env: only what a test sets itself."""
    for name in list(os.environ):
        if name.startswith("FLASK_") or name == "APP_SETTINGS":
            monkeypatch.delenv(name)
    monkeypatch.setattr(settings, "load_dotenv", lambda path: None)


def test_the_page_shows_settings_but_hides_the_secret(client):
    page = client.get("/").get_data(as_text=True)
    assert "ITEMS_PER_PAGE" in page
    assert "test-secret-value" not in page
    assert "****** (hidden)" in page


def test_debug_is_off_unless_asked_for(clean_environment):
    app = settings.create_app()
    assert app.debug is False
    assert app.config["GREETING"] == "Hello from the defaults in settings.py"


def test_the_file_overrides_defaults_and_flask_variables_override_the_file(
        clean_environment, monkeypatch, tmp_path):
    settings_file = tmp_path / "test_settings.cfg"
    settings_file.write_text('GREETING = "from the file"\nITEMS_PER_PAGE = 25\n')
    monkeypatch.setenv("APP_SETTINGS", str(settings_file))
    monkeypatch.setenv("FLASK_ITEMS_PER_PAGE", "5")
    app = settings.create_app()
    assert app.config["GREETING"] == "from the file"
    assert app.config["ITEMS_PER_PAGE"] == 5  # a number: FLASK_* values are read as JSON
