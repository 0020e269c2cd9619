package compat

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	theirexemplars "github.com/thanos-io/thanos/pkg/exemplars/exemplarspb"
	theirinfo "github.com/thanos-io/thanos/pkg/info/infopb"
	theirmetadata "github.com/thanos-io/thanos/pkg/metadata/metadatapb"
	theirhints "github.com/thanos-io/thanos/pkg/store/hintspb"
	theirlabels "github.com/thanos-io/thanos/pkg/store/labelpb"
	theirstore "github.com/thanos-io/thanos/pkg/store/storepb"

	"github.com/strata-metrics/strata/api/proto/exemplarspb"
	"github.com/strata-metrics/strata/api/proto/hintspb"
	"github.com/strata-metrics/strata/api/proto/infopb"
	"github.com/strata-metrics/strata/api/proto/labelpb"
	"github.com/strata-metrics/strata/api/proto/metadatapb"
	"github.com/strata-metrics/strata/api/proto/storepb"
)

// gogoMessage is what Thanos' gogo-generated types offer.
type gogoMessage interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

type pair struct {
	ours   func() proto.Message
	theirs func() gogoMessage
}

// pairs lists every message type the Store and Info services use.
var pairs = map[string]pair{
	"Label":                    {func() proto.Message { return &labelpb.Label{} }, func() gogoMessage { return &theirlabels.Label{} }},
	"LabelSet":                 {func() proto.Message { return &labelpb.LabelSet{} }, func() gogoMessage { return &theirlabels.LabelSet{} }},
	"ZLabelSet":                {func() proto.Message { return &labelpb.ZLabelSet{} }, func() gogoMessage { return &theirlabels.ZLabelSet{} }},
	"Chunk":                    {func() proto.Message { return &storepb.Chunk{} }, func() gogoMessage { return &theirstore.Chunk{} }},
	"Series":                   {func() proto.Message { return &storepb.Series{} }, func() gogoMessage { return &theirstore.Series{} }},
	"SeriesBatch":              {func() proto.Message { return &storepb.SeriesBatch{} }, func() gogoMessage { return &theirstore.SeriesBatch{} }},
	"AggrChunk":                {func() proto.Message { return &storepb.AggrChunk{} }, func() gogoMessage { return &theirstore.AggrChunk{} }},
	"LabelMatcher":             {func() proto.Message { return &storepb.LabelMatcher{} }, func() gogoMessage { return &theirstore.LabelMatcher{} }},
	"SeriesRequest":            {func() proto.Message { return &storepb.SeriesRequest{} }, func() gogoMessage { return &theirstore.SeriesRequest{} }},
	"QueryHints":               {func() proto.Message { return &storepb.QueryHints{} }, func() gogoMessage { return &theirstore.QueryHints{} }},
	"ShardInfo":                {func() proto.Message { return &storepb.ShardInfo{} }, func() gogoMessage { return &theirstore.ShardInfo{} }},
	"Func":                     {func() proto.Message { return &storepb.Func{} }, func() gogoMessage { return &theirstore.Func{} }},
	"Grouping":                 {func() proto.Message { return &storepb.Grouping{} }, func() gogoMessage { return &theirstore.Grouping{} }},
	"Range":                    {func() proto.Message { return &storepb.Range{} }, func() gogoMessage { return &theirstore.Range{} }},
	"SeriesResponse":           {func() proto.Message { return &storepb.SeriesResponse{} }, func() gogoMessage { return &theirstore.SeriesResponse{} }},
	"LabelNamesRequest":        {func() proto.Message { return &storepb.LabelNamesRequest{} }, func() gogoMessage { return &theirstore.LabelNamesRequest{} }},
	"LabelNamesResponse":       {func() proto.Message { return &storepb.LabelNamesResponse{} }, func() gogoMessage { return &theirstore.LabelNamesResponse{} }},
	"LabelValuesRequest":       {func() proto.Message { return &storepb.LabelValuesRequest{} }, func() gogoMessage { return &theirstore.LabelValuesRequest{} }},
	"LabelValuesResponse":      {func() proto.Message { return &storepb.LabelValuesResponse{} }, func() gogoMessage { return &theirstore.LabelValuesResponse{} }},
	"SeriesRequestHints":       {func() proto.Message { return &hintspb.SeriesRequestHints{} }, func() gogoMessage { return &theirhints.SeriesRequestHints{} }},
	"SeriesResponseHints":      {func() proto.Message { return &hintspb.SeriesResponseHints{} }, func() gogoMessage { return &theirhints.SeriesResponseHints{} }},
	"Block":                    {func() proto.Message { return &hintspb.Block{} }, func() gogoMessage { return &theirhints.Block{} }},
	"LabelNamesRequestHints":   {func() proto.Message { return &hintspb.LabelNamesRequestHints{} }, func() gogoMessage { return &theirhints.LabelNamesRequestHints{} }},
	"LabelNamesResponseHints":  {func() proto.Message { return &hintspb.LabelNamesResponseHints{} }, func() gogoMessage { return &theirhints.LabelNamesResponseHints{} }},
	"LabelValuesRequestHints":  {func() proto.Message { return &hintspb.LabelValuesRequestHints{} }, func() gogoMessage { return &theirhints.LabelValuesRequestHints{} }},
	"LabelValuesResponseHints": {func() proto.Message { return &hintspb.LabelValuesResponseHints{} }, func() gogoMessage { return &theirhints.LabelValuesResponseHints{} }},
	"QueryStats":               {func() proto.Message { return &hintspb.QueryStats{} }, func() gogoMessage { return &theirhints.QueryStats{} }},
	"InfoRequest":              {func() proto.Message { return &infopb.InfoRequest{} }, func() gogoMessage { return &theirinfo.InfoRequest{} }},
	"InfoResponse":             {func() proto.Message { return &infopb.InfoResponse{} }, func() gogoMessage { return &theirinfo.InfoResponse{} }},
	"StoreInfo":                {func() proto.Message { return &infopb.StoreInfo{} }, func() gogoMessage { return &theirinfo.StoreInfo{} }},
	"RulesInfo":                {func() proto.Message { return &infopb.RulesInfo{} }, func() gogoMessage { return &theirinfo.RulesInfo{} }},
	"MetricMetadataInfo":       {func() proto.Message { return &infopb.MetricMetadataInfo{} }, func() gogoMessage { return &theirinfo.MetricMetadataInfo{} }},
	"TargetsInfo":              {func() proto.Message { return &infopb.TargetsInfo{} }, func() gogoMessage { return &theirinfo.TargetsInfo{} }},
	"ExemplarsInfo":            {func() proto.Message { return &infopb.ExemplarsInfo{} }, func() gogoMessage { return &theirinfo.ExemplarsInfo{} }},
	"QueryAPIInfo":             {func() proto.Message { return &infopb.QueryAPIInfo{} }, func() gogoMessage { return &theirinfo.QueryAPIInfo{} }},
	"StatusInfo":               {func() proto.Message { return &infopb.StatusInfo{} }, func() gogoMessage { return &theirinfo.StatusInfo{} }},
	"TSDBInfo":                 {func() proto.Message { return &infopb.TSDBInfo{} }, func() gogoMessage { return &theirinfo.TSDBInfo{} }},
	"MetricMetadataRequest":    {func() proto.Message { return &metadatapb.MetricMetadataRequest{} }, func() gogoMessage { return &theirmetadata.MetricMetadataRequest{} }},
	"MetricMetadataResponse":   {func() proto.Message { return &metadatapb.MetricMetadataResponse{} }, func() gogoMessage { return &theirmetadata.MetricMetadataResponse{} }},
	"MetricMetadata":           {func() proto.Message { return &metadatapb.MetricMetadata{} }, func() gogoMessage { return &theirmetadata.MetricMetadata{} }},
	"MetricMetadataEntry":      {func() proto.Message { return &metadatapb.MetricMetadataEntry{} }, func() gogoMessage { return &theirmetadata.MetricMetadataEntry{} }},
	"Meta":                     {func() proto.Message { return &metadatapb.Meta{} }, func() gogoMessage { return &theirmetadata.Meta{} }},
	"ExemplarsRequest":         {func() proto.Message { return &exemplarspb.ExemplarsRequest{} }, func() gogoMessage { return &theirexemplars.ExemplarsRequest{} }},
	"ExemplarsResponse":        {func() proto.Message { return &exemplarspb.ExemplarsResponse{} }, func() gogoMessage { return &theirexemplars.ExemplarsResponse{} }},
	"ExemplarData":             {func() proto.Message { return &exemplarspb.ExemplarData{} }, func() gogoMessage { return &theirexemplars.ExemplarData{} }},
	"Exemplar":                 {func() proto.Message { return &exemplarspb.Exemplar{} }, func() gogoMessage { return &theirexemplars.Exemplar{} }},
}

// fieldsAddedAfterThanos are fields of ours that Thanos v0.41 does not have
// yet (newer Thanos added them); older peers skip them as unknown fields.
var fieldsAddedAfterThanos = map[string]bool{
	"thanos.info.StoreInfo.supports_projections": true,
}

// TestWireRoundTrip marshals each of our messages with every field set,
// unmarshals it into Thanos' type, marshals that again and unmarshals it back
// into ours: any field whose number, type or meaning differs is lost or
// garbled on the way and the result differs from the original. Each oneof
// variant is tried on its own.
func TestWireRoundTrip(t *testing.T) {
	for name, p := range pairs {
		variants := maxOneofVariants(p.ours().ProtoReflect().Descriptor())
		for v := 0; v < variants; v++ {
			t.Run(fmt.Sprintf("%s/variant%d", name, v), func(t *testing.T) {
				orig := p.ours()
				fill(orig.ProtoReflect(), 0, v)
				if orig.ProtoReflect().Descriptor().Fields().Len() > 0 && proto.Size(orig) == 0 {
					t.Fatal("filler set no field")
				}
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(orig)
				if err != nil {
					t.Fatal(err)
				}
				theirs := p.theirs()
				if err := theirs.Unmarshal(b); err != nil {
					t.Fatalf("Thanos cannot unmarshal our %s: %v", name, err)
				}
				b2, err := theirs.Marshal()
				if err != nil {
					t.Fatalf("Thanos cannot marshal %s: %v", name, err)
				}
				back := p.ours()
				if err := proto.Unmarshal(b2, back); err != nil {
					t.Fatalf("we cannot unmarshal Thanos' %s: %v", name, err)
				}
				clearNewFields(orig.ProtoReflect())
				if !proto.Equal(orig, back) {
					t.Fatalf("%s changed through Thanos' type:\nours:  %v\nafter: %v", name, orig, back)
				}
			})
		}
	}
}

// TestFieldsMatch compares field numbers, names and wire types of every
// message with the struct tags of Thanos' generated code, in both
// directions, so a field Thanos has and we lack is caught too.
func TestFieldsMatch(t *testing.T) {
	for name, p := range pairs {
		ours := ourFields(p.ours().ProtoReflect().Descriptor())
		theirs := theirFields(reflect.TypeOf(p.theirs()).Elem())
		for num, f := range theirs {
			if ours[num] != f {
				t.Errorf("%s field %d: Thanos has %q, we have %q", name, num, f, ours[num])
			}
		}
		md := p.ours().ProtoReflect().Descriptor()
		for num, f := range ours {
			if _, ok := theirs[num]; !ok && !fieldsAddedAfterThanos[string(md.FullName())+"."+strings.Split(f, " ")[0]] {
				t.Errorf("%s field %d (%s) is ours only", name, num, f)
			}
		}
	}
}

func ourFields(md protoreflect.MessageDescriptor) map[int]string {
	out := map[int]string{}
	fs := md.Fields()
	for i := 0; i < fs.Len(); i++ {
		f := fs.Get(i)
		out[int(f.Number())] = string(f.Name()) + " " + wireType(f.Kind())
	}
	return out
}

func wireType(k protoreflect.Kind) string {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Int64Kind,
		protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		return "varint"
	case protoreflect.Sint32Kind:
		return "zigzag32"
	case protoreflect.Sint64Kind:
		return "zigzag64"
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return "fixed32"
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return "fixed64"
	default:
		return "bytes"
	}
}

func theirFields(typ reflect.Type) map[int]string {
	out := map[int]string{}
	add := func(tag string) {
		parts := strings.Split(tag, ",")
		num, _ := strconv.Atoi(parts[1])
		for _, p := range parts {
			if n, ok := strings.CutPrefix(p, "name="); ok {
				out[num] = n + " " + parts[0]
			}
		}
	}
	for i := 0; i < typ.NumField(); i++ {
		if tag := typ.Field(i).Tag.Get("protobuf"); tag != "" {
			add(tag)
		}
	}
	// Oneof variants live in wrapper types.
	if m, ok := reflect.PointerTo(typ).MethodByName("XXX_OneofWrappers"); ok {
		res := m.Func.Call([]reflect.Value{reflect.New(typ)})
		for _, w := range res[0].Interface().([]interface{}) {
			wt := reflect.TypeOf(w).Elem()
			for i := 0; i < wt.NumField(); i++ {
				if tag := wt.Field(i).Tag.Get("protobuf"); tag != "" {
					add(tag)
				}
			}
		}
	}
	return out
}

func maxOneofVariants(md protoreflect.MessageDescriptor) int {
	n := 1
	for i := 0; i < md.Oneofs().Len(); i++ {
		n = max(n, md.Oneofs().Get(i).Fields().Len())
	}
	return n
}

// fill sets every field of m to a non-default value that depends on the
// field number, so swapped fields show. For oneofs it sets the variant-th
// member.
func fill(m protoreflect.Message, depth, variant int) {
	fs := m.Descriptor().Fields()
	for i := 0; i < fs.Len(); i++ {
		f := fs.Get(i)
		if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
			if o.Fields().Get(variant%o.Fields().Len()) != f {
				continue
			}
		}
		if f.Kind() == protoreflect.MessageKind && depth >= 3 {
			continue
		}
		if f.IsMap() {
			mp := m.Mutable(f).Map()
			for j := 0; j < 2; j++ {
				k := scalar(f.MapKey(), j+1).MapKey()
				if f.MapValue().Kind() == protoreflect.MessageKind {
					v := mp.NewValue()
					fill(v.Message(), depth+1, variant)
					mp.Set(k, v)
				} else {
					mp.Set(k, scalar(f.MapValue(), j+1))
				}
			}
			continue
		}
		if f.IsList() {
			l := m.Mutable(f).List()
			for j := 0; j < 2; j++ {
				if f.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fill(e.Message(), depth+1, variant)
					l.Append(e)
				} else {
					l.Append(scalar(f, j+1))
				}
			}
			continue
		}
		if f.Kind() == protoreflect.MessageKind {
			fill(m.Mutable(f).Message(), depth+1, variant)
			continue
		}
		m.Set(f, scalar(f, 1))
	}
}

func scalar(f protoreflect.FieldDescriptor, j int) protoreflect.Value {
	n := int64(f.Number())*10 + int64(j)
	switch f.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		vals := f.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1 - (j-1)%vals.Len()).Number())
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(n * 1_000_003)
	case protoreflect.Uint64Kind:
		return protoreflect.ValueOfUint64(uint64(n) * 1_000_000_007)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n) + 0.25)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", f.Name(), j))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(fmt.Sprintf("bytes-%d-%d", f.Number(), j)))
	}
	panic(fmt.Sprintf("filler: unhandled kind %v of %s", f.Kind(), f.FullName()))
}

// clearNewFields removes the fields Thanos does not know from m, recursively.
func clearNewFields(m protoreflect.Message) {
	m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fieldsAddedAfterThanos[string(f.FullName())] {
			m.Clear(f)
			return true
		}
		if f.Kind() == protoreflect.MessageKind {
			if f.IsList() {
				for i := 0; i < v.List().Len(); i++ {
					clearNewFields(v.List().Get(i).Message())
				}
			} else if !f.IsMap() {
				clearNewFields(v.Message())
			}
		}
		return true
	})
}
