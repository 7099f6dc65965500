from flask_restful import Api, Resource
api = Api(app)

class Hello(Resource):
    def get(self):
        return {"message": "Hello, World"}

api.add_resource(Hello, '/')
