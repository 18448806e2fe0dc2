# The algorithms guide's "image byte array conversion python code", copied verbatim (only these comment
# lines added): it writes input.json, the real-time inference request, in the current folder.
# Usage: python3 tools/guide_image_to_request.py IMAGE   (tests use it to build requests byte for byte).
import base64
import json
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("filename", help="converts image to bytes array",
                    type=str)
args = parser.parse_args()

image = open(args.filename, 'rb')  # open binary file in read mode
image_read = image.read()
image_64_encode = base64.b64encode(image_read)
bytes_array = image_64_encode.decode('utf-8')
request = {
  "instances": [
    {
      "data": bytes_array
    }
  ]
}

with open('input.json', 'w') as outfile:
    json.dump(request, outfile, indent=4, sort_keys=True)
