import os

from dotenv import load_dotenv
from flask import Flask

load_dotenv()  # copies .env into os.environ
app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "dev")  # "dev" if unset: forgeable
app.config["DEBUG"] = True  # the debugger runs any code typed into it: never in production
