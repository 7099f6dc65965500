from flask import render_template
@app.route('/welcome/<user>')
def welcome(user):
    return render_template('welcome.html', user=user)
