  @app.route('/user/<name>')
  def user(name):
      return f"Hello, {name}"

  from flask import request
  @app.route('/search')
  def search():
      q = request.args.get('q')
      return f"Search term: {q}"
