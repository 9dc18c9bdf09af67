// Prints the root CID that js-ipfs-unixfs's importer (profile unixfs-v1-2025) gives a file
// or directory. Unlike `ipfs-car pack`, it keeps empty directories, as cod and kubo do, and
// records symlinks as UnixFS symlink nodes (their target text, never followed), as cod and
// kubo do; ipfs-car follows them. Hidden files are included. Like cod, it refuses a root that
// is itself a symlink, and anything that is not a file, directory or symlink.
import { importer } from 'ipfs-unixfs-importer'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'
import fs from 'node:fs'
import path from 'node:path'

function * walk (root, rel) {
  const full = path.join(root, rel)
  const st = fs.lstatSync(full)
  if (st.isSymbolicLink()) {
    yield { path: rel, link: fs.readlinkSync(full) }
  } else if (st.isDirectory()) {
    const names = fs.readdirSync(full)
    if (names.length === 0 && rel !== '') yield { path: rel }
    for (const name of names) yield * walk(root, rel === '' ? name : rel + '/' + name)
  } else if (st.isFile()) {
    yield { path: rel, content: fs.createReadStream(full) }
  } else {
    throw new Error(`unsupported entry ${full}`)
  }
}

const root = process.argv[2]
const rootStat = fs.lstatSync(root)
if (rootStat.isSymbolicLink()) throw new Error(`the root ${root} is a symlink`)
const isDir = rootStat.isDirectory()
const source = isDir ? [...walk(root, '')] : [{ content: fs.createReadStream(root) }]
let last
for await (const entry of importer(source, new BlackHoleBlockstore(), { profile: 'unixfs-v1-2025', wrapWithDirectory: isDir })) {
  last = entry
}
console.log(last.cid.toString())
