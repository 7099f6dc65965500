import io

import pytest

from uploads import app as uploads_app

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20  # the first bytes of a real PNG file


@pytest.fixture
def app(tmp_path):
    uploads_app.config.update(TESTING=True, UPLOAD_FOLDER=str(tmp_path))
    yield uploads_app


@pytest.fixture
def client(app):
    return app.test_client()


def upload(client, content, name):
    return client.post("/", data={"file": (io.BytesIO(content), name)})


def test_a_png_is_saved_and_sent_back(client, tmp_path):
    assert upload(client, PNG, "cat.png").status_code == 302
    assert (tmp_path / "cat.png").read_bytes() == PNG
    assert client.get("/files/cat.png").data == PNG


def test_a_path_in_the_name_stays_in_the_folder(client, tmp_path):
    upload(client, PNG, "../../cat.png")
    assert [path.name for path in tmp_path.iterdir()] == ["cat.png"]


def test_a_web_page_named_png_is_refused(client, tmp_path):
    response = upload(client, b"<script>alert(1)</script>", "page.png")
    assert b"not really a .png file" in response.data
    assert list(tmp_path.iterdir()) == []


def test_a_file_over_the_limit_is_refused(client, tmp_path):
    response = upload(client, PNG + b"\x00" * 1024 * 1024, "big.png")
    assert response.status_code == 413
    assert list(tmp_path.iterdir()) == []
