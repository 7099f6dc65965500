from flask_wtf import CSRFProtect, FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

csrf = CSRFProtect(app)  # every POST needs the token: a form field or the X-CSRFToken header


class RegisterForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(3, 32)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8)])


@app.route("/register", methods=["GET", "POST"])
def register():
    form = RegisterForm()  # reads request.form itself
    if form.validate_on_submit():  # a POST with a valid token and valid fields
        User.create(form.username.data, form.password.data)
        return redirect(url_for("notes"))
    # register.html puts {{ form.csrf_token }} inside its <form>
    return render_template("register.html", form=form)
