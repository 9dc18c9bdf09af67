// A minimal IPFS trustless gateway (HTTP Gateway spec, application/vnd.ipld.car responses) over a
// directory of CAR files that ipfs-car made: GET /ipfs/{cid}[?format=car] answers {cid}.car when
// the client accepts CARs (Accept: application/vnd.ipld.car or ?format=car), 406 when it asks for
// anything else, 404 for a CID it does not hold. The CIDs come from ipfs-car, never from cod.
// Usage: node gateway.mjs CAR_DIR  -> prints "listening PORT" on stdout.
import http from 'node:http'
import fs from 'node:fs'
import path from 'node:path'

const dir = process.argv[2]
const CAR = 'application/vnd.ipld.car'
const requests = []

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://gateway')
  requests.push(req.url)
  if (url.pathname === '/requests') {  // what the gateway was asked (for tests)
    res.writeHead(200, { 'Content-Type': 'application/json' })
    res.end(JSON.stringify(requests))
    return
  }
  const match = url.pathname.match(/^\/ipfs\/([^/]+)\/?$/)
  if (!match) { res.writeHead(404); res.end('not found'); return }
  const wantsCar = url.searchParams.get('format') === 'car' || (req.headers.accept || '').includes(CAR)
  if (!wantsCar) { res.writeHead(406); res.end('this gateway answers only CARs'); return }
  const cid = match[1]  // CIDv1 text, as cod nodes ask (CAR files are named by ipfs-car's root CIDs)
  if (!/^b[a-z2-7]+$/.test(cid)) { res.writeHead(400); res.end('bad CID'); return }
  const file = path.join(dir, cid + '.car')
  if (!fs.existsSync(file)) { res.writeHead(404); res.end('no such CID here'); return }
  res.writeHead(200, { 'Content-Type': CAR, 'X-Content-Type-Options': 'nosniff' })
  fs.createReadStream(file).pipe(res)
})
server.listen(0, '127.0.0.1', () => { console.log('listening ' + server.address().port) })
