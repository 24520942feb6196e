// Command prng writes bcryptprimitives.dll for Wine 8 (Debian 12's),
// which lacks it and Go's runtime (1.22 and later) will not start
// without its ProcessPrng: a PE32+ DLL of no code, whose one export
// forwards ProcessPrng to advapi32's SystemFunction036 (RtlGenRandom,
// which Wine has: the same buffer and length, and Go ignores the
// result). CI puts it in the Wine prefix's system32 before it runs the
// Windows test binaries.
//
//	go run ./.ci/prng DIR/bcryptprimitives.dll
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: prng OUT.dll")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], dll(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

const (
	section = 0x1000 // the one section's RVA
	fileAt  = 0x200  // and its file offset (the file alignment)
)

// dll returns the DLL's bytes: the headers, then one read-only section
// holding the export directory.
func dll() []byte {
	// The section: the export directory, its three tables, the strings.
	var ed bytes.Buffer
	w := func(vs ...any) {
		for _, v := range vs {
			binary.Write(&ed, binary.LittleEndian, v)
		}
	}
	const (
		dirLen  = 40
		tables  = dirLen + 4 + 4 + 2
		name    = "bcryptprimitives.dll\x00"
		export  = "ProcessPrng\x00"
		forward = "advapi32.SystemFunction036\x00"
	)
	nameRVA := uint32(section + tables)
	exportRVA := nameRVA + uint32(len(name))
	forwardRVA := exportRVA + uint32(len(export))
	w(uint32(0), uint32(0), uint16(0), uint16(0), nameRVA, uint32(1), uint32(1), uint32(1),
		uint32(section+dirLen), uint32(section+dirLen+4), uint32(section+dirLen+8))
	w(forwardRVA, exportRVA, uint16(0)) // the address table (a forwarder: inside the directory), the names, the ordinals
	ed.WriteString(name + export + forward)
	size := uint32(ed.Len())

	var b bytes.Buffer
	h := func(vs ...any) {
		for _, v := range vs {
			binary.Write(&b, binary.LittleEndian, v)
		}
	}
	dos := make([]byte, 0x40)
	copy(dos, "MZ")
	binary.LittleEndian.PutUint32(dos[0x3c:], 0x40) // e_lfanew
	b.Write(dos)
	b.WriteString("PE\x00\x00")
	// COFF: x86-64, one section, a 240-byte optional header; an executable
	// image, large-address aware, a DLL.
	h(uint16(0x8664), uint16(1), uint32(0), uint32(0), uint32(0), uint16(240), uint16(0x2022))
	// The PE32+ optional header: no code, no entry point.
	h(uint16(0x20b), uint8(14), uint8(0), uint32(0), uint32(fileAt), uint32(0), uint32(0), uint32(section))
	h(uint64(0x180000000), uint32(0x1000), uint32(fileAt))
	h(uint16(6), uint16(0), uint16(0), uint16(0), uint16(6), uint16(0), uint32(0))
	h(uint32(2*section), uint32(fileAt), uint32(0), uint16(3), uint16(0x160)) // image size, headers, checksum, console, ASLR + NX
	h(uint64(0x100000), uint64(0x1000), uint64(0x100000), uint64(0x1000), uint32(0), uint32(16))
	h(uint32(section), size) // the export table
	for range 15 {
		h(uint32(0), uint32(0))
	}
	// The section header: initialized, readable data.
	b.WriteString(".edata\x00\x00")
	h(size, uint32(section), uint32(fileAt), uint32(fileAt), uint32(0), uint32(0), uint16(0), uint16(0), uint32(0x40000040))
	b.Write(make([]byte, fileAt-b.Len()))
	b.Write(ed.Bytes())
	b.Write(make([]byte, 2*fileAt-b.Len()))
	return b.Bytes()
}
