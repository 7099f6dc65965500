from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

login_manager = LoginManager(app)
login_manager.login_view = "login"  # where @login_required sends anonymous visitors


class User(UserMixin, db.Model):  # UserMixin adds get_id() and is_authenticated
    id = db.Column(db.Integer, primary_key=True)


@login_manager.user_loader
def load_user(user_id):  # the id comes back from the session cookie as a string
    return db.session.get(User, int(user_id))


@app.route("/notes")
@login_required
def notes():
    return {"user": current_user.id}

# In the login view, once the password is checked: login_user(user)
