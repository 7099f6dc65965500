from flask import jsonify

@app.route('/data')
def data():
    return jsonify({"name": "Nutan", "role": "DevOps Engineer"})
