from flask_restful import Api, Resource

api = Api(app)


class Note(Resource):
    def get(self, note_id):
        return {"id": note_id, "title": "first"}  # a dict becomes JSON

    def delete(self, note_id):
        return "", 204


api.add_resource(Note, "/api/notes/<int:note_id>")
