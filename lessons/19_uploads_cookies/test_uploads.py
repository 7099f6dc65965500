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
    client = app.test_client()
    client.get("/")  # the page gives this browser its CSRF token, kept in the session
    return client


def upload(client, content, name):
    with client.session_transaction() as session:
        token = session["csrf_token"]
    return client.post("/", data={"csrf_token": token, "file": (io.BytesIO(content), name)})


def stored_files(folder):
    return sorted(path.name for path in folder.iterdir())


def test_a_png_is_saved_under_a_new_name_and_sent_back(client, tmp_path):
    assert upload(client, PNG, "cat.png").status_code == 302
    [stored] = stored_files(tmp_path)
    assert stored.endswith(".png") and stored != "cat.png"
    assert (tmp_path / stored).read_bytes() == PNG
    assert client.get(f"/files/{stored}").data == PNG
    assert f'/files/{stored}">cat.png</a>' in client.get("/").text  # listed by the name it was sent with


def test_a_second_upload_of_the_same_name_does_not_replace_the_first(client, tmp_path):
    upload(client, PNG + b"original", "cat.png")
    upload(client, PNG + b"<replaced by mallory>", "../cat.png")
    contents = sorted((tmp_path / name).read_bytes() for name in stored_files(tmp_path))
    assert contents == [PNG + b"<replaced by mallory>", PNG + b"original"]


def test_a_path_in_the_name_stays_in_the_folder(client, tmp_path):
    upload(client, PNG, "../../cat.png")
    assert len(stored_files(tmp_path)) == 1
    assert not (tmp_path.parent / "cat.png").exists() and not (tmp_path.parent.parent / "cat.png").exists()


def test_a_post_without_the_csrf_token_is_refused(client, tmp_path):
    response = client.post("/", data={"file": (io.BytesIO(PNG), "cat.png")})
    assert response.status_code == 400
    assert stored_files(tmp_path) == []


def test_a_web_page_named_png_is_refused(client, tmp_path):
    response = upload(client, b"<script>alert(1)</script>", "page.png")
    assert b"not really a .png file" in response.data
    assert stored_files(tmp_path) == []


def test_a_file_over_the_limit_is_refused(client, tmp_path):
    response = upload(client, PNG + b"\x00" * 1024 * 1024, "big.png")
    assert response.status_code == 413
    assert stored_files(tmp_path) == []
