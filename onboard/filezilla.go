package onboard

import (
	"encoding/xml"
)

// fzSites is FileZilla 3's site manager format (sitemanager.xml, and what
// File > Import reads).
type fzSites struct {
	XMLName xml.Name   `xml:"FileZilla3"`
	Version string     `xml:"version,attr"`
	Servers []fzServer `xml:"Servers>Server"`
}

// fzServer is one site. The codes: Protocol 1 = SFTP, Type 0 = default
// server type, Logontype 5 = key file.
type fzServer struct {
	Host                       string `xml:"Host"`
	Port                       int    `xml:"Port"`
	Protocol                   int    `xml:"Protocol"`
	Type                       int    `xml:"Type"`
	User                       string `xml:"User"`
	Logontype                  int    `xml:"Logontype"`
	Keyfile                    string `xml:"Keyfile"`
	TimezoneOffset             int    `xml:"TimezoneOffset"`
	PasvMode                   string `xml:"PasvMode"`
	MaximumMultipleConnections int    `xml:"MaximumMultipleConnections"`
	EncodingType               string `xml:"EncodingType"`
	BypassProxy                int    `xml:"BypassProxy"`
	Name                       string `xml:"Name"`
	Comments                   string `xml:"Comments"`
	SyncBrowsing               int    `xml:"SyncBrowsing"`
	DirectoryComparison        int    `xml:"DirectoryComparison"`
}

// FileZillaSite renders a site definition for File > Import in FileZilla.
func FileZillaSite(o Options) ([]byte, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	s := fzSites{Version: "3", Servers: []fzServer{{
		Host: o.Host, Port: o.Port, Protocol: 1, Type: 0, User: o.User, Logontype: 5,
		Keyfile: o.KeyfilePath, PasvMode: "MODE_DEFAULT", EncodingType: "Auto", Name: o.SiteName,
		// One connection: parallel transfers would share the quota anyway,
		// and a single connection keeps the server's messages in one place.
		MaximumMultipleConnections: 1,
		Comments:                   "Account " + o.User + ". See README.txt.",
	}}}
	out, err := xml.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}
